/**
 * `vm.json`: what the process provider knows about one sandbox, on disk
 * beside its workspace so that a later server process can find, check and
 * destroy sandboxes an earlier one started.
 *
 * Invariant: the file is replaced atomically (write, then rename) and parsed
 * with zod on every read; a damaged record reads as null, never as a guess.
 * It never holds the token.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { NETWORK_MODES } from "../egress/egress-policy";

export const SandboxRecord = z.object({
  /** 1: before sandboxes had their own uid, network and limits (only found and destroyed). */
  version: z.union([z.literal(1), z.literal(2)]),
  taskId: z.string(),
  /**
   * Leader of the sandbox's process group: bubblewrap's in-sandbox init, or the sidecar itself. While a
   * sandbox under bubblewrap starts (its init not known yet) it is the launcher, the same as `launcherPid`.
   */
  pid: z.number().int().positive(),
  /** The process the provider spawned (bwrap, or the sidecar when unsandboxed). */
  launcherPid: z.number().int().positive(),
  /** Unset while the sandbox starts (recorded before its sidecar listens). */
  port: z.number().int().positive().optional(),
  /** `unix:<sandbox>/sockets/sidecar.sock` once the sidecar listens. */
  endpoint: z.string().optional(),
  /** The unprivileged host uid every process of the sandbox runs as (null: the server's own). */
  uid: z.number().int().nullable().optional(),
  /** The sandbox's cgroup directories (removed with it). */
  cgroups: z.array(z.string()).optional(),
  /** Whether its volume is a mounted filesystem image (unmounted with it). */
  volumeImage: z.boolean().optional(),
  /** Its egress policy, so a later server process can serve it again. */
  network: z.object({ mode: z.enum(NETWORK_MODES), allowedDomains: z.array(z.string()) }).optional(),
  labels: z.record(z.string(), z.string()),
  startedAt: z.string(),
  bubblewrap: z.boolean(),
  /** Command-line arguments that identify this sandbox's processes in /proc. */
  markers: z.array(z.string()).min(1),
});
export type SandboxRecord = z.infer<typeof SandboxRecord>;

export const RECORD_FILE = "vm.json";

export async function writeRecord(dir: string, record: SandboxRecord): Promise<void> {
  const path = join(dir, RECORD_FILE);
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  await rename(temporary, path);
}

/** The record in `dir`; null when there is none or it cannot be parsed. */
export async function readRecord(dir: string): Promise<SandboxRecord | null> {
  let text: string;
  try {
    text = await readFile(join(dir, RECORD_FILE), "utf8");
  } catch {
    return null;
  }
  try {
    return SandboxRecord.parse(JSON.parse(text));
  } catch {
    return null;
  }
}
