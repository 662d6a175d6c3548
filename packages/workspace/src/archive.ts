/**
 * Moving what a workspace's setup produced (node_modules, .venv, …) in and
 * out of the workspace as one tar stream, so a server can cache it and put it
 * back instead of running the setup again.
 *
 * Invariants:
 * - Only paths inside the workspace are packed: each one is confined like a
 *   file tool's path (no absolute paths, no `..`, no symlink escape, no
 *   `.git`), and names reach tar verbatim and `./`-prefixed, so a file name
 *   can never be read as a tar option.
 * - Symlinks are packed as symlinks, never followed.
 * - Unpacking writes under the root only (GNU tar strips leading `/` and
 *   refuses `..` members), owned by whoever unpacks.
 * - A pack stops at `limitBytes`: the partial archive is an error, never a result.
 * - Adopting an unpacked tree moves only confined paths, and only into places
 *   that are empty; a rename that fails part-way throws, and what it moved is
 *   the archive's own content, so unpacking the archive over it completes it.
 */
import { spawn } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { lstat, mkdir, realpath, rename, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable, Transform, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { confinedGitEnv, runGit } from "./git";
import { confinePath } from "./paths";
import { WorkspaceOperationError } from "./types";

export interface WorkspaceArchiver {
  /**
   * Writes a tar archive of `paths` (relative to the workspace root) to
   * `file` on this machine; returns its size in bytes. TOO_LARGE past `limitBytes`.
   */
  packPaths(paths: readonly string[], file: string, options?: { limitBytes?: number }): Promise<number>;
  /** Extracts the tar archive `file` (on this machine) into the workspace. */
  unpackArchive(file: string): Promise<void>;
  /**
   * Moves `paths` of `dir` — an archive already unpacked on this machine —
   * into the workspace by renaming them, which costs nothing per file. False,
   * with nothing moved, when it cannot: `dir` is on another filesystem, or a
   * path is missing from `dir` or already in the workspace. Only an archiver
   * on the server's own machine has it.
   */
  adoptTree?(dir: string, paths: readonly string[]): Promise<boolean>;
  /**
   * The workspace's root as its commands see it (symlinks resolved) and the
   * `git ls-files -s -z` records of its tracked files matching `pathspecs`:
   * what decides whether a cached environment fits, read without starting a
   * command (in a sandbox, each command pays for a sandbox of its own).
   */
  trackedFiles(pathspecs: readonly string[]): Promise<{ root: string; records: string }>;
}

export function isWorkspaceArchiver(value: unknown): value is WorkspaceArchiver {
  const candidate = value as Partial<WorkspaceArchiver> | null;
  return (
    typeof candidate?.packPaths === "function" &&
    typeof candidate.unpackArchive === "function" &&
    typeof candidate.trackedFiles === "function"
  );
}

/** Checks every path (see confinePath) and gives them in the form tar reads: `./`-prefixed, NUL-separated. */
export async function tarFileList(root: string, paths: readonly string[]): Promise<Buffer> {
  if (paths.length === 0) throw new WorkspaceOperationError("INVALID", "nothing to pack");
  for (const path of paths) await confinePath(root, path);
  return Buffer.from(paths.map((path) => `./${path.replace(/^\.\/+/, "")}\0`).join(""));
}

/** Counts bytes passing through; fails with TOO_LARGE past `limit`. */
export function byteLimit(limit: number, onBytes?: (bytes: number) => void): Transform {
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      onBytes?.(bytes);
      if (bytes > limit) callback(new WorkspaceOperationError("TOO_LARGE", `the archive exceeds ${limit} bytes`));
      else callback(null, chunk);
    },
  });
}

function tarFailure(stderr: string, code: number | null, signal: NodeJS.Signals | null): Error {
  const why = signal ? `was killed (${signal})` : `exited with code ${code}`;
  return new WorkspaceOperationError("INVALID", `tar ${why}: ${stderr.trim().slice(-500) || "no message"}`);
}

/**
 * Runs tar in `root` with `input` on its stdin and its stdout into `output`.
 * `output` is ended only once tar has exited 0 — an archive tar gave up on
 * halfway is destroyed instead, so a reader never takes it for a whole one.
 */
async function runTar(
  root: string,
  args: string[],
  input: Readable | Buffer,
  output: Writable | null,
  signal?: AbortSignal,
): Promise<void> {
  signal?.throwIfAborted();
  const child = spawn("tar", args, {
    cwd: root,
    stdio: ["pipe", output ? "pipe" : "ignore", "pipe"],
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C" },
    signal,
    killSignal: "SIGKILL",
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => {
    stderr = (stderr + text).slice(-4000);
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => (code === 0 ? resolve() : reject(tarFailure(stderr, code, signal))));
  });
  const source = Buffer.isBuffer(input) ? Readable.from([input]) : input;
  // tar stops reading at the archive's end marker and may exit before the padding after it was
  // written to its stdin: a broken stdin is an error only when tar did not succeed.
  const fed = pipeline(source, child.stdin!).then(
    () => null,
    (error: Error) => error,
  );
  try {
    await Promise.all([output ? pipeline(child.stdout!, output, { end: false }) : Promise.resolve(), exited]);
    await fed;
  } catch (error) {
    child.kill("SIGKILL");
    await exited.catch(() => undefined);
    output?.destroy(error as Error);
    throw error;
  }
  if (output)
    await new Promise<void>((resolve, reject) =>
      output.end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
}

const PACK_ARGS = ["-c", "-f", "-", "--null", "--verbatim-files-from", "-T", "-"];

/** Streams a tar archive of the checked list (tarFileList) under `root` into `output` (the sidecar's answer). */
export function packListTo(root: string, list: Buffer, output: Writable): Promise<void> {
  return runTar(root, PACK_ARGS, list, output);
}

/** Extracts the tar archive read from `input` into `root`; `signal` ends tar. */
export async function unpackInto(root: string, input: Readable, signal?: AbortSignal): Promise<void> {
  await runTar(root, ["-x", "-f", "-", "--no-same-owner"], input, null, signal);
}

/** Packs `paths` under `root` into `file`; returns its size (LocalExecutor's WorkspaceArchiver). */
export async function packPathsToFile(
  root: string,
  paths: readonly string[],
  file: string,
  options: { limitBytes?: number } = {},
): Promise<number> {
  let bytes = 0;
  const counter = byteLimit(options.limitBytes ?? Number.POSITIVE_INFINITY, (n) => {
    bytes = n;
  });
  const list = await tarFileList(root, paths);
  const written = pipeline(counter, createWriteStream(file, { mode: 0o600 }));
  await Promise.all([runTar(root, PACK_ARGS, list, counter), written]);
  return bytes;
}

export function unpackFileInto(root: string, file: string, signal?: AbortSignal): Promise<void> {
  return unpackInto(root, createReadStream(file), signal);
}

/** A product path as an archive lists it (`node_modules/`, `./x`) in the form path functions read. */
function plainPath(path: string): string {
  return path.replace(/^(\.\/)+/, "").replace(/\/+$/, "");
}

/** True when something (a dangling symlink too) is at `path`. */
function present(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/** LocalExecutor's adoptTree: renames `paths` of `dir` into `root` (see WorkspaceArchiver). */
export async function adoptTreeInto(root: string, dir: string, paths: readonly string[]): Promise<boolean> {
  if (paths.length === 0) return false;
  if ((await stat(dir)).dev !== (await stat(root)).dev) return false;
  const moves: { from: string; to: string }[] = [];
  for (const path of paths.map(plainPath)) {
    const to = await confinePath(root, path);
    const from = join(dir, path);
    if (!(await present(from)) || (await present(to))) return false;
    moves.push({ from, to });
  }
  for (const { from, to } of moves) {
    await mkdir(dirname(to), { recursive: true });
    await rename(from, to);
  }
  return true;
}

/** WorkspaceArchiver.trackedFiles for a workspace on this machine (LocalExecutor, the sidecar). */
export async function trackedFilesIn(
  root: string,
  pathspecs: readonly string[],
): Promise<{ root: string; records: string }> {
  const result = await runGit(["ls-files", "-s", "-z", "--", ...pathspecs], {
    cwd: root,
    env: confinedGitEnv(root),
    maxOutputBytes: 64 * 1024 * 1024,
  });
  if (result.exitCode !== 0) {
    const why = result.stderr.trim().slice(-500);
    throw new WorkspaceOperationError(
      "INVALID",
      `git ls-files failed in the workspace: ${why || `exit ${result.exitCode}`}`,
    );
  }
  return { root: await realpath(root), records: result.stdout.toString("utf8") };
}
