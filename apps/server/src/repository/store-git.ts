/**
 * How the repository store runs git: an environment built from nothing (no
 * user or system configuration, no credential helper leaks in), hooks off,
 * local `file://` remotes allowed, and a time limit on every run.
 */
import { Writable } from "node:stream";
import { GitError, type GitRunOptions, git, gitBuffer, gitOutputStream, runGit } from "@repo/workspace";

/** The identity of the server's own git processes (also how a later server recognises orphans of a dead one). */
export const SERVER_GIT_EMAIL = "umbra@umbra.local";

const STORE_GIT_ENV = {
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: process.env.HOME ?? "/tmp",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_AUTHOR_NAME: "Umbra",
  GIT_AUTHOR_EMAIL: SERVER_GIT_EMAIL,
  GIT_COMMITTER_NAME: "Umbra",
  GIT_COMMITTER_EMAIL: SERVER_GIT_EMAIL,
  LANG: "C",
};
/** How long one store operation may take before git is killed, ms (fetches and transfers get longer). */
export const STORE_GIT_TIMEOUT_MS = 120_000;
/**
 * Limit of one pack transfer, ms. Transfers are also limited by inactivity
 * (the sidecar client's), so this only stops one that crawls for an hour.
 */
export const TRANSFER_TIMEOUT_MS = 60 * 60_000;

export type StoreGitOptions = Omit<GitRunOptions, "env">;

const storeArgs = (args: string[]) => [
  "-c",
  "protocol.file.allow=always",
  "-c",
  "core.hooksPath=/dev/null",
  // Objects above this are neither deltified nor held whole in memory by git.
  "-c",
  "core.bigFileThreshold=64m",
  ...args,
];
const withStoreEnv = (options: StoreGitOptions): GitRunOptions => ({
  timeoutMs: STORE_GIT_TIMEOUT_MS,
  ...options,
  env: STORE_GIT_ENV,
});

/** git in the store; throws GitError unless it exits 0. */
export function storeGit(args: string[], options: StoreGitOptions): Promise<string> {
  return git(storeArgs(args), withStoreEnv(options));
}

export function storeGitBuffer(args: string[], options: StoreGitOptions): Promise<Buffer> {
  return gitBuffer(storeArgs(args), withStoreEnv(options));
}

/** git in the store, reporting how it ended instead of throwing. */
export function storeGitRun(args: string[], options: StoreGitOptions) {
  return runGit(storeArgs(args), withStoreEnv(options));
}

/** git's stdout as a stream (see gitOutputStream). */
export function storeGitStream(args: string[], options: Omit<StoreGitOptions, "stdout" | "maxOutputBytes">) {
  return gitOutputStream(storeArgs(args), withStoreEnv(options));
}

/**
 * git's stdout as text, keeping at most `limitBytes` (cut at a line end) and
 * counting the rest, so an output of any size costs bounded memory.
 */
export async function storeGitBounded(
  args: string[],
  options: Omit<StoreGitOptions, "stdout" | "maxOutputBytes">,
  limitBytes: number,
): Promise<{ text: string; omittedBytes: number }> {
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let omittedBytes = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      const room = Math.max(0, limitBytes - keptBytes);
      if (room > 0) {
        kept.push(chunk.subarray(0, room));
        keptBytes += Math.min(room, chunk.length);
      }
      omittedBytes += Math.max(0, chunk.length - room);
      callback();
    },
  });
  const result = await storeGitRun(args, { ...options, stdout: sink });
  if (result.exitCode !== 0) {
    throw new GitError(args, result.exitCode, result.stderr, { timedOut: result.timedOut, aborted: result.aborted });
  }
  let out = Buffer.concat(kept);
  if (omittedBytes > 0) {
    const end = out.lastIndexOf(10) + 1;
    omittedBytes += out.length - end;
    out = out.subarray(0, end);
  }
  return { text: out.toString("utf8"), omittedBytes };
}

/** What git said went wrong, for a message a user reads. */
export function gitReason(error: unknown): string {
  if (error instanceof GitError) return error.reason;
  return error instanceof Error ? error.message : String(error);
}
