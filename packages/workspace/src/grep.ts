/**
 * Regular-expression search over a workspace's text files.
 *
 * Invariants:
 * - `.git` and `node_modules` directories are never entered; symlinks are
 *   never followed (they could lead out of the workspace or loop).
 * - A file containing a NUL byte is binary and skipped; so is a file larger
 *   than `maxFileBytes`.
 * - Files are visited in sorted order, so the same tree gives the same answer.
 */
import { lstat, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { toWorkspacePath } from "./paths";
import type { GrepMatch } from "./types";
import { WorkspaceOperationError } from "./types";

const SKIPPED_DIRECTORIES = new Set([".git", "node_modules"]);
const MAX_LINE_CHARS = 1000;

export interface GrepFilesOptions {
  /** The workspace root; match paths are relative to it. */
  root: string;
  /** Absolute path of the file or directory to search. */
  start: string;
  maxResults: number;
  ignoreCase: boolean;
  /** Files larger than this are skipped, bytes. */
  maxFileBytes: number;
}

export function compilePattern(pattern: string, ignoreCase: boolean): RegExp {
  try {
    return new RegExp(pattern, ignoreCase ? "i" : "");
  } catch (error) {
    throw new WorkspaceOperationError("INVALID", `invalid regular expression: ${(error as Error).message}`);
  }
}

export function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Files under `path`; `path` itself may be a symlink (already confined by the caller), nothing below it is followed. */
async function* walkFiles(path: string, followLink = true): AsyncGenerator<string> {
  const entry = followLink ? await stat(path) : await lstat(path);
  if (entry.isFile()) {
    yield path;
    return;
  }
  if (!entry.isDirectory()) return;
  const children = (await readdir(path, { withFileTypes: true })).sort(byName);
  for (const child of children) {
    if (child.isDirectory() && SKIPPED_DIRECTORIES.has(child.name)) continue;
    if (child.isFile() || child.isDirectory()) yield* walkFiles(join(path, child.name), false);
  }
}

function searchText(text: string, regex: RegExp, path: string, limit: number): GrepMatch[] {
  const matches: GrepMatch[] = [];
  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length && matches.length < limit; index++) {
    const line = lines[index]!;
    if (regex.test(line)) matches.push({ path, line: index + 1, text: line.slice(0, MAX_LINE_CHARS) });
  }
  return matches;
}

export async function grepFiles(pattern: string, options: GrepFilesOptions): Promise<GrepMatch[]> {
  const regex = compilePattern(pattern, options.ignoreCase);
  const matches: GrepMatch[] = [];
  for await (const file of walkFiles(options.start)) {
    if (matches.length >= options.maxResults) break;
    const info = await stat(file);
    if (info.size > options.maxFileBytes) continue;
    const content = await readFile(file);
    if (content.includes(0)) continue;
    const path = toWorkspacePath(options.root, file);
    matches.push(...searchText(content.toString("utf8"), regex, path, options.maxResults - matches.length));
  }
  return matches;
}
