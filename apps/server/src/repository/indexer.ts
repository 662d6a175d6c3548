/**
 * INDEX_REPOSITORY: a full-text index of a commit's text files in Postgres
 * (a generated tsvector column with a GIN index), keyed by repository and
 * commit. A commit that is already indexed is skipped, so re-initializing an
 * unchanged task costs one lookup. The `llm` agent's search_code tool reads it.
 */
import { type Db, queryRows, repoIndexCommits, repoIndexFiles } from "@repo/db";
import { and, eq, sql } from "drizzle-orm";
import type { Clock } from "../utils/clock";
import type { RepositoryStore } from "./repository-store";

/** Files larger than this are not indexed. */
const MAX_FILE_BYTES = 512 * 1024;
const INSERT_BATCH = 250;
/** Files read from the store at once: at most this many, and at most READ_BATCH_BYTES of them. */
const READ_BATCH = 2000;
/** Bytes read from the store at once, so a repository of large files is never held whole in memory. */
const READ_BATCH_BYTES = 8 * 1024 * 1024;

export interface IndexResult {
  commitSha: string;
  fileCount: number;
  /** False when the commit was already indexed. */
  indexed: boolean;
}

export interface CodeSearchHit {
  path: string;
  snippet: string;
  rank: number;
}

export class RepositoryIndexer {
  constructor(
    private readonly db: Db,
    private readonly store: RepositoryStore,
    private readonly clock: Clock,
  ) {}

  async indexCommit(repoUrl: string, commitSha: string): Promise<IndexResult> {
    const repoKey = this.store.repoKey(repoUrl);
    const [existing] = await this.db
      .select()
      .from(repoIndexCommits)
      .where(and(eq(repoIndexCommits.repoKey, repoKey), eq(repoIndexCommits.commitSha, commitSha)));
    if (existing) return { commitSha, fileCount: existing.fileCount, indexed: false };

    const candidates = (await this.store.listFiles(repoUrl, commitSha)).filter((f) => f.size <= MAX_FILE_BYTES);
    let fileCount = 0;
    let already: number | null = null;
    await this.db.transaction(async (tx) => {
      // Several server processes may index one commit at once (tasks on one repository created together):
      // one indexes it, the others wait for it here and find it done.
      await tx.execute(
        sql`SELECT pg_advisory_xact_lock(hashtextextended(${`umbra-index:${repoKey}:${commitSha}`}, 0))`,
      );
      const [done] = await tx
        .select()
        .from(repoIndexCommits)
        .where(and(eq(repoIndexCommits.repoKey, repoKey), eq(repoIndexCommits.commitSha, commitSha)));
      if (done) {
        already = done.fileCount;
        return;
      }
      await tx
        .delete(repoIndexFiles)
        .where(and(eq(repoIndexFiles.repoKey, repoKey), eq(repoIndexFiles.commitSha, commitSha)));
      for (const paths of batches(candidates)) {
        const contents = await this.store.readFiles(repoUrl, commitSha, paths);
        const rows = [...contents]
          .filter(([, buffer]) => isText(buffer))
          .map(([path, buffer]) => ({ repoKey, commitSha, path, content: buffer.toString("utf8") }));
        for (let j = 0; j < rows.length; j += INSERT_BATCH) {
          await tx.insert(repoIndexFiles).values(rows.slice(j, j + INSERT_BATCH));
        }
        fileCount += rows.length;
      }
      await tx
        .insert(repoIndexCommits)
        .values({ repoKey, commitSha, fileCount, indexedAt: this.clock.now() })
        .onConflictDoNothing();
    });
    if (already !== null) return { commitSha, fileCount: already, indexed: false };
    return { commitSha, fileCount, indexed: true };
  }

  async search(repoUrl: string, commitSha: string, query: string, limit = 10): Promise<CodeSearchHit[]> {
    const repoKey = this.store.repoKey(repoUrl);
    const rows = await queryRows<{ path: string; content: string; rank: number }>(
      this.db,
      sql`SELECT path, content, ts_rank(search_vector, q) AS rank
          FROM repo_index_files, websearch_to_tsquery('simple', ${query}) AS q
          WHERE repo_key = ${repoKey} AND commit_sha = ${commitSha} AND search_vector @@ q
          ORDER BY rank DESC, path
          LIMIT ${Math.max(1, Math.min(limit, 50))}`,
    );
    return rows.map((row) => ({ path: row.path, rank: Number(row.rank), snippet: snippetFor(row.content, query) }));
  }
}

/** The files' paths in groups of at most READ_BATCH files and READ_BATCH_BYTES bytes. */
function* batches(files: { path: string; size: number }[]): Generator<string[]> {
  let batch: string[] = [];
  let bytes = 0;
  for (const file of files) {
    if (batch.length > 0 && (batch.length >= READ_BATCH || bytes + file.size > READ_BATCH_BYTES)) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(file.path);
    bytes += file.size;
  }
  if (batch.length > 0) yield batch;
}

function isText(buffer: Buffer): boolean {
  return !buffer.subarray(0, 8192).includes(0);
}

/** A few lines around the first line that mentions a query term. */
function snippetFor(content: string, query: string): string {
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
    .map((line, i) => `${Math.max(0, hit - 2) + i + 1}: ${line.slice(0, 300)}`)
    .join("\n");
}
