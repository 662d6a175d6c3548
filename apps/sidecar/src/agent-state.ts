/**
 * The agent's state directory inside the sandbox (SIDECAR_AGENT_HOME: the
 * agent CLIs' HOME, outside the workspace) moved in and out as a gzipped tar
 * archive, for sandboxes that cannot see the server's disk (kubernetes). The
 * server saves the archive with the work and restores it into the next
 * sandbox of the task, so the agent's session survives a cleanup.
 *
 * Invariants:
 * - Only the state directory is archived or replaced; without
 *   SIDECAR_AGENT_HOME both routes answer 409 NO_AGENT_STATE.
 * - Restoring replaces the directory's content with the archive's, whole: a
 *   broken archive leaves an error, never a mix of old and new.
 * - tar runs without the sidecar's environment (the token never reaches it)
 *   and never takes owners from the archive.
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { HttpError } from "./http";

const TAR_ENV = { PATH: "/usr/local/bin:/usr/bin:/bin", LC_ALL: "C" };
const STAGING_PREFIX = ".umbra-restore-";

export function assertAgentHome(home: string | undefined): string {
  if (!home) throw new HttpError(409, "NO_AGENT_STATE", "this sandbox keeps no agent state (SIDECAR_AGENT_HOME)");
  return home;
}

/** Runs tar with `args`; `input` feeds its stdin; resolves with its stdout once it exited 0. */
function tar(args: string[], input?: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn("tar", args, { env: TAR_ENV, stdio: [input ? "pipe" : "ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout?.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-2000);
    });
    child.once("error", (error) => reject(new HttpError(500, "INTERNAL", `tar could not run: ${error.message}`)));
    child.once("close", (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new HttpError(400, "VALIDATION_ERROR", `tar failed (${code}): ${stderr.trim()}`));
    });
    if (input && child.stdin) {
      input.once("error", () => child.kill("SIGKILL"));
      child.stdin.on("error", () => {});
      input.pipe(child.stdin);
    }
  });
}

/** A gzipped tar of the state directory's content (an empty archive when the directory is empty or missing). */
export async function archiveAgentState(home: string): Promise<Buffer> {
  await mkdir(home, { recursive: true, mode: 0o700 });
  return tar(["-czf", "-", "-C", home, `--exclude=./${STAGING_PREFIX}*`, "."]);
}

/** Replaces the state directory's content with the archive read from `body`. */
export async function restoreAgentState(home: string, body: Readable): Promise<void> {
  await mkdir(home, { recursive: true, mode: 0o700 });
  // Unpacked into a directory of its own first (inside `home`, which may be a volume of its
  // own: renames stay on one filesystem), so a broken archive leaves the old content in place.
  const staging = await mkdtemp(join(home, STAGING_PREFIX));
  try {
    await tar(["-xzf", "-", "-C", staging, "--no-same-owner"], body);
    for (const entry of await readdir(home)) {
      if (join(home, entry) !== staging) await rm(join(home, entry), { recursive: true, force: true });
    }
    for (const entry of await readdir(staging)) await rename(join(staging, entry), join(home, entry));
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
