/**
 * The Changes tab's model of a diff (GET /diff): the patch cut into one raw
 * patch per file (what the diff viewer takes), joined with the server's
 * +/− counts, and the paths arranged as a tree of directories with totals.
 * Pure and cheap — a 1,000-file patch is split in one pass — so the viewer
 * can virtualize over files and build each file's view only when shown.
 */
import type { DiffResponse } from "@repo/types";

export interface DiffFileEntry {
  path: string;
  additions: number;
  deletions: number;
  /** This file's part of the patch, from its `diff --git` line on. */
  patch: string;
  /** Lines in the file's patch, to decide whether it starts collapsed. */
  lines: number;
  binary: boolean;
}

/** Files whose patch has more lines than this start collapsed. */
export const LARGE_FILE_LINES = 400;

function pathOf(header: string): string {
  const match = /^diff --git (?:"?a\/(.+?)"?) (?:"?b\/(.+?)"?)$/.exec(header);
  return match?.[2] ?? match?.[1] ?? header.replace(/^diff --git /, "");
}

/** Splits a unified patch at its `diff --git` lines. */
export function splitPatch(patch: string): { path: string; patch: string; lines: number }[] {
  const files: { path: string; patch: string; lines: number }[] = [];
  if (!patch) return files;
  const starts: number[] = [];
  const re = /^diff --git .*$/gm;
  for (let match = re.exec(patch); match; match = re.exec(patch)) starts.push(match.index);
  starts.forEach((start, i) => {
    const end = starts[i + 1] ?? patch.length;
    const text = patch.slice(start, end);
    const header = text.slice(0, text.indexOf("\n") < 0 ? text.length : text.indexOf("\n"));
    const plusPlus = /^\+\+\+ b\/(.*)$/m.exec(text);
    files.push({ path: plusPlus?.[1] ?? pathOf(header), patch: text, lines: text.split("\n").length });
  });
  return files;
}

/** The diff's files in the server's order, each with its counts and its patch. */
export function diffEntries(diff: DiffResponse): DiffFileEntry[] {
  const patches = new Map(splitPatch(diff.patch).map((file) => [file.path, file]));
  return diff.files.map((file) => {
    const part = patches.get(file.path);
    const patch = part?.patch ?? "";
    return {
      path: file.path,
      additions: file.additions,
      deletions: file.deletions,
      patch,
      lines: part?.lines ?? 0,
      binary: /^Binary files /m.test(patch) || (patch !== "" && !patch.includes("\n@@")),
    };
  });
}

export interface TreeNode {
  name: string;
  /** Full path for files, the directory path for directories. */
  path: string;
  additions: number;
  deletions: number;
  /** Index into the entries, for files. */
  index?: number;
  children: TreeNode[];
}

/** The changed paths as a directory tree with summed counts; single-child directory chains are joined ("src/app"). */
export function buildTree(entries: readonly DiffFileEntry[]): TreeNode {
  const root: TreeNode = { name: "", path: "", additions: 0, deletions: 0, children: [] };
  entries.forEach((entry, index) => {
    const parts = entry.path.split("/");
    let node = root;
    node.additions += entry.additions;
    node.deletions += entry.deletions;
    parts.forEach((part, depth) => {
      const last = depth === parts.length - 1;
      const path = parts.slice(0, depth + 1).join("/");
      let child = last ? undefined : node.children.find((c) => c.index === undefined && c.name === part);
      if (!child) {
        child = { name: part, path, additions: 0, deletions: 0, children: [], ...(last ? { index } : {}) };
        node.children.push(child);
      }
      child.additions += entry.additions;
      child.deletions += entry.deletions;
      node = child;
    });
  });
  const compact = (node: TreeNode): TreeNode => {
    let current = node;
    while (
      current.index === undefined &&
      current.children.length === 1 &&
      current.children[0]!.index === undefined &&
      current !== root
    ) {
      const only = current.children[0]!;
      current = { ...only, name: `${current.name}/${only.name}` };
    }
    const children = current.children.map(compact).sort((a, b) => {
      const aDir = a.index === undefined;
      const bDir = b.index === undefined;
      return aDir !== bDir ? (aDir ? -1 : 1) : a.name.localeCompare(b.name);
    });
    return { ...current, children };
  };
  return compact(root);
}
