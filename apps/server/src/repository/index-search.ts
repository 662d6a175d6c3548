/**
 * Search over the content-keyed full-text index (see indexer.ts): the files of
 * one commit whose path and content together match a `websearch_to_tsquery`,
 * best first, with a snippet around the first line that mentions a term.
 *
 * A file's document is its path's words (weight A) followed by its content,
 * the same tsvector as when each (commit, path) row held its content, so
 * matching and rank are unchanged. Only the content's vector has a GIN index
 * (on the shared blob rows); a file can still match through its path — even a
 * query whose terms are split between path and content — so the candidates
 * are the blobs whose content matches alone plus the commit's files whose path
 * holds any query term (without such a term the path adds nothing the match
 * could use, so content alone decides). Every candidate is then checked and
 * ranked against the whole document.
 *
 * A large file is stored in parts (see indexer.ts): each part is matched and
 * ranked as the path's words followed by that part, so the terms of a query
 * must meet in one part (64 KB) of such a file, and the file is listed once,
 * by its best part, with the snippet from that part.
 */
import { type Db, queryRows } from "@repo/db";
import { sql } from "drizzle-orm";

export interface CodeSearchHit {
  path: string;
  snippet: string;
  rank: number;
}

export async function searchCommit(
  db: Db,
  repoKey: string,
  commitSha: string,
  query: string,
  limit: number,
): Promise<CodeSearchHit[]> {
  const rows = await queryRows<{ path: string; content: string; first_line: number; rank: number }>(
    db,
    sql`WITH q AS (
          SELECT websearch_to_tsquery('simple', ${query}) AS q,
                 replace(plainto_tsquery('simple', ${query})::text, ' & ', ' | ')::tsquery AS any_term
        ),
        content_hits AS (
          SELECT b.blob_id FROM repo_index_blobs b, q
          WHERE b.repo_key = ${repoKey} AND b.content_vector @@ q.q
        ),
        best_part AS (
          SELECT DISTINCT ON (p.path) p.path, b.content, b.first_line,
                 ts_rank(p.path_vector || b.content_vector, q.q) AS rank
          FROM repo_index_paths p
          JOIN repo_index_blobs b ON b.repo_key = p.repo_key AND b.blob_id = p.blob_id, q
          WHERE p.repo_key = ${repoKey} AND p.commit_sha = ${commitSha}
            AND (p.blob_id IN (SELECT blob_id FROM content_hits) OR p.path_vector @@ q.any_term)
            AND (p.path_vector || b.content_vector) @@ q.q
          ORDER BY p.path, rank DESC, b.part
        )
        SELECT path, content, first_line, rank FROM best_part
        ORDER BY rank DESC, path
        LIMIT ${Math.max(1, Math.min(limit, 50))}`,
  );
  return rows.map((row) => ({
    path: row.path,
    rank: Number(row.rank),
    snippet: snippetFor(row.content, query, Number(row.first_line)),
  }));
}

/** A few lines around the first line that mentions a query term, numbered from `firstLine`, the line `content` begins on. */
function snippetFor(content: string, query: string, firstLine: number): string {
  const terms = query
    .toLowerCase()
    .split(/\W+/)
    .filter((t) => t.length > 1);
  const lines = content.split("\n");
  const hit = Math.max(
    0,
    lines.findIndex((line) => terms.some((t) => line.toLowerCase().includes(t))),
  );
  return lines
    .slice(Math.max(0, hit - 2), hit + 3)
    .map((line, i) => `${Math.max(0, hit - 2) + i + firstLine}: ${line.slice(0, 300)}`)
    .join("\n");
}
