/**
 * One unprivileged host uid per sandbox, from a range no account uses
 * (default from 3,000,000). Every process of a sandbox runs as it, and it
 * owns the sandbox's volume; two sandboxes never share one, so per-user
 * kernel limits (inotify instances, user namespaces, RLIMIT_NPROC) and file
 * permissions separate them too.
 *
 * Invariant: a uid is claimed by creating `<vms>/.uids/<uid>` exclusively
 * (atomic across server processes) and released when its sandbox is
 * destroyed; a claim whose sandbox directory is gone is stale and reused.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

export const DEFAULT_UID_BASE = 3_000_000;
const SLOTS = 65_536;

export class SandboxUids {
  private readonly claims: string;

  constructor(
    private readonly vmsDir: string,
    private readonly base = DEFAULT_UID_BASE,
  ) {
    this.claims = join(vmsDir, ".uids");
  }

  async claim(taskId: string): Promise<number> {
    await mkdir(this.claims, { recursive: true, mode: 0o700 });
    for (let slot = 0; slot < SLOTS; slot++) {
      const uid = this.base + slot;
      const file = join(this.claims, String(uid));
      try {
        await writeFile(file, taskId, { flag: "wx", mode: 0o600 });
        return uid;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const owner = await readFile(file, "utf8").catch(() => "");
      if (owner === taskId) return uid;
      if (owner && !existsSync(join(this.vmsDir, owner))) {
        // Stale: its sandbox is gone. Remove and try this slot again.
        await rm(file, { force: true });
        slot--;
      }
    }
    throw new Error(`no free sandbox uid in ${this.base}..${this.base + SLOTS - 1}`);
  }

  async release(uid: number, taskId: string): Promise<void> {
    const file = join(this.claims, String(uid));
    const owner = await readFile(file, "utf8").catch(() => null);
    if (owner === taskId) await rm(file, { force: true });
  }
}
