/**
 * search_code for a turn: the full-text index of the commit the workspace was
 * prepared at, once that index is complete; until then (INDEX_REPOSITORY
 * builds it in the background, see indexer.ts) a plain text search of the
 * workspace's files through its tool executor, so the tool always answers.
 * A search that finds the commit unindexed starts its index (a server that
 * died while building it left it so), as the next initialization would.
 *
 * The text search follows the index's rules where it can: the query's words
 * (the same split as the index's snippets), every one of them required in a
 * file, case ignored. It reads file contents only (the index also matches
 * words of a file's path) and sees the workspace as it is now, where the
 * index sees the prepared commit.
 */
import type { ToolExecutor } from "@repo/workspace";
import type { CodeSearchHit } from "./index-search";
import type { RepositoryIndexer } from "./indexer";

/** Matching lines the text search reads at most; files are visited in sorted order. */
const TEXT_SEARCH_MAX_LINES = 2000;
/** Matching lines shown per file. */
const SNIPPET_LINES = 3;
/** Words of a query the text search uses. */
const MAX_TERMS = 8;

export interface CodeSearchTarget {
  repoUrl: string;
  /** The commit INDEX_REPOSITORY indexes for this workspace; null: none. */
  indexedCommitSha: string | null;
}

export async function searchCode(
  { indexer, executor }: { indexer: RepositoryIndexer; executor: Pick<ToolExecutor, "grep"> },
  target: CodeSearchTarget,
  query: string,
  limit = 10,
): Promise<CodeSearchHit[]> {
  const commit = target.indexedCommitSha;
  if (commit) {
    if (await indexer.isIndexed(target.repoUrl, commit)) return indexer.search(target.repoUrl, commit, query, limit);
    // Refused only while the server shuts down; a failed run is logged by the indexer.
    await indexer.indexInBackground(target.repoUrl, commit).catch(() => undefined);
  }
  return textSearch(executor, query, limit);
}

/** The files whose contents hold every word of `query`, most matching lines first. */
export async function textSearch(
  executor: Pick<ToolExecutor, "grep">,
  query: string,
  limit: number,
): Promise<CodeSearchHit[]> {
  const terms = [
    ...new Set(
      query
        .toLowerCase()
        .split(/\W+/)
        .filter((term) => term.length > 1),
    ),
  ].slice(0, MAX_TERMS);
  if (terms.length === 0) return [];
  // Words are runs of word characters: nothing in them needs escaping in a regular expression.
  const pattern = terms.join("|");
  const matches = await executor.grep(pattern, { ignoreCase: true, maxResults: TEXT_SEARCH_MAX_LINES });
  const files = new Map<string, { lines: typeof matches; terms: Set<string> }>();
  for (const match of matches) {
    const file = files.get(match.path) ?? { lines: [], terms: new Set<string>() };
    files.set(match.path, file);
    file.lines.push(match);
    const text = match.text.toLowerCase();
    for (const term of terms) if (text.includes(term)) file.terms.add(term);
  }
  return [...files.entries()]
    .filter(([, file]) => file.terms.size === terms.length)
    .map(([path, file]) => ({
      path,
      rank: file.lines.length / (file.lines.length + 1),
      snippet: file.lines
        .slice(0, SNIPPET_LINES)
        .map((line) => `${line.line}: ${line.text.slice(0, 300)}`)
        .join("\n"),
    }))
    .sort((a, b) => b.rank - a.rank || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .slice(0, Math.max(1, Math.min(limit, 50)));
}
