/**
 * Splits a unified diff (`git diff` output) into per-file sections of typed
 * lines, so the diff view can colour additions and removals without ever
 * interpreting the patch text as markup.
 */

export type DiffLineKind = "meta" | "hunk" | "add" | "del" | "context" | "note";

export interface DiffLine {
  kind: DiffLineKind;
  text: string;
}

export interface DiffSection {
  path: string;
  lines: DiffLine[];
}

function classify(line: string, inHunk: boolean): DiffLineKind {
  if (line.startsWith("@@")) return "hunk";
  if (!inHunk) return "meta";
  if (line.startsWith("+")) return "add";
  if (line.startsWith("-")) return "del";
  if (line.startsWith("\\")) return "note";
  return "context";
}

function pathOf(header: string): string {
  // "diff --git a/x b/x" — take the b/ side, which is the name after the change.
  const match = /^diff --git (?:"?a\/(.+?)"?) (?:"?b\/(.+?)"?)$/.exec(header);
  return match?.[2] ?? match?.[1] ?? header.replace(/^diff --git /, "");
}

export function parsePatch(patch: string): DiffSection[] {
  const sections: DiffSection[] = [];
  let current: DiffSection | null = null;
  let inHunk = false;
  const lines = patch.split("\n");
  if (lines.at(-1) === "") lines.pop();
  for (const line of lines) {
    if (line.startsWith("diff --git ")) {
      current = { path: pathOf(line), lines: [{ kind: "meta", text: line }] };
      sections.push(current);
      inHunk = false;
      continue;
    }
    if (!current) {
      current = { path: "", lines: [] };
      sections.push(current);
    }
    const kind = classify(line, inHunk);
    if (kind === "hunk") inHunk = true;
    if (kind === "meta" && line.startsWith("+++ b/")) current.path = line.slice(6);
    current.lines.push({ kind, text: line });
  }
  return sections;
}
