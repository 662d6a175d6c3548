/**
 * Path confinement for the file tools: turns a caller's relative path into an
 * absolute path that is guaranteed to lie inside the workspace root.
 *
 * Invariants:
 * - Absolute paths, NUL bytes and `..` escapes are refused before touching the disk.
 * - The real path (symlinks resolved) of the target, or for a path that does
 *   not exist yet of its deepest existing ancestor, lies under the real root.
 * - Nothing inside a `.git` directory is reachable, lexically or through a symlink.
 *
 * This guards the tool API, not the machine: a concurrent command could swap a
 * directory for a symlink between the check and the use. Commands themselves
 * are confined by the sandbox the workspace runs in.
 */
import { lstat, realpath } from "node:fs/promises";
import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
import { WorkspaceOperationError, WorkspacePathError } from "./types";

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}

function touchesGitDir(relativePath: string): boolean {
  return relativePath.split(/[\\/]+/).some((segment) => segment.toLowerCase() === ".git");
}

function isOutside(relativePath: string): boolean {
  return relativePath === ".." || relativePath.startsWith(`..${sep}`) || isAbsolute(relativePath);
}

/** Checks that need no disk access; returns the absolute path under `root`. */
export function resolveLexically(root: string, path: string): string {
  if (path.includes("\0")) throw new WorkspacePathError(path, "contains a NUL byte");
  if (isAbsolute(path)) throw new WorkspacePathError(path, "absolute paths are not allowed");
  const absolute = resolve(root, path);
  const inside = relative(resolve(root), absolute);
  if (isOutside(inside)) throw new WorkspacePathError(path, "leads outside the workspace");
  if (touchesGitDir(inside)) throw new WorkspacePathError(path, "git internals are not accessible");
  return absolute;
}

async function realRoot(root: string): Promise<string> {
  try {
    return await realpath(root);
  } catch (error) {
    if (isMissing(error)) throw new WorkspaceOperationError("NOT_FOUND", `workspace ${root} does not exist`);
    throw error;
  }
}

/**
 * Resolves `path` under `root` and proves that it stays inside once symlinks
 * are followed. Works for paths that do not exist yet (a file about to be
 * written): their deepest existing ancestor is checked instead.
 */
export async function confinePath(root: string, path: string): Promise<string> {
  const absolute = resolveLexically(root, path);
  const rootReal = await realRoot(root);
  let probe = absolute;
  for (;;) {
    let real: string;
    try {
      real = await realpath(probe);
    } catch (error) {
      if (!isMissing(error)) throw error;
      const entry = await lstat(probe).catch(() => null);
      // lstat succeeding where realpath failed means a symlink that points nowhere;
      // writing through it could create a file anywhere.
      if (entry) throw new WorkspacePathError(path, "is a dangling symlink");
      const parent = dirname(probe);
      if (parent === probe) throw error;
      probe = parent;
      continue;
    }
    const inside = relative(rootReal, real);
    if (isOutside(inside)) throw new WorkspacePathError(path, "resolves to a location outside the workspace");
    if (touchesGitDir(inside)) throw new WorkspacePathError(path, "git internals are not accessible");
    return absolute;
  }
}

/** The path of `absolute` relative to `root`, with forward slashes. */
export function toWorkspacePath(root: string, absolute: string): string {
  return relative(root, absolute).split(sep).join("/");
}
