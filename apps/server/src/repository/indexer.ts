/**
 * INDEX_REPOSITORY: a full-text index of a commit's text files in Postgres,
 * keyed by content. The `llm` agent's search_code tool reads it.
 *
 * Layout (packages/db/src/schema.ts):
 * - repo_index_blobs: a text file's content and its tsvector (GIN), once per
 *   (repository, git blob id), shared by every commit and path that has it.
 *   A file of more than PART_CHARS is cut at line ends into parts, a row
 *   each. A blob that is not text is kept with no content, so the next
 *   commit does not read it again.
 * - repo_index_paths: a commit's text files, path → blob id, with the path's
 *   own words (weight A). This is what grows with every commit: one small row
 *   per text file, no content.
 * - repo_index_commits: its row means the commit's path list is complete, so
 *   re-initializing an unchanged task costs one lookup.
 *
 * Invariants:
 * - Indexing a commit reads and writes only the blobs the repository has not
 *   indexed yet: the set difference is taken in SQL, a batch of ids at a time.
 * - No statement carries more than BATCH_TEXT_BYTES of text (a large file
 *   goes in parts, so this holds for every file) and the event loop gets a
 *   turn between statements, so with the embedded database (which runs SQL
 *   on this thread) other requests wait at most one statement. There
 *   is no long transaction either: PGlite runs one transaction at a time, so
 *   one around the whole commit would make every other query wait for it.
 *   Every write is idempotent (ON CONFLICT DO NOTHING), so a crash halfway
 *   leaves rows the next run reuses; a blob's part 0 is written after its
 *   other parts and the commit row last, so each marks a complete whole.
 * - One commit is indexed by one process at a time (`locks`: advisory locks
 *   across processes sharing Postgres); the others wait and find it done.
 * - Forgetting a commit removes its path list only: blobs stay, other commits
 *   may share them. Blobs no commit refers to are not collected (the index is
 *   a cache, bounded by the repository's distinct file contents).
 * - INDEX_REPOSITORY does not wait for a commit's index (indexInBackground):
 *   a workspace is ready to work in before its repository is indexed, and
 *   search_code answers from a plain text search of the workspace until the
 *   commit row exists (see code-search.ts). A background run that fails is
 *   logged and started again by the next initialization of that commit;
 *   close() ends the runs under way between two statements.
 */
import { type Db, queryRows, repoIndexBlobs, repoIndexCommits, repoIndexPaths } from "@repo/db";
import { and, eq, sql } from "drizzle-orm";
import type { Logger } from "../logger";
import type { Clock } from "../utils/clock";
import { KeyedMutex } from "../utils/keyed-mutex";
import { searchCommit } from "./index-search";
import type { KeyedLock, RepositoryStore } from "./repository-store";

export type { CodeSearchHit } from "./index-search";

/** Files larger than this are not indexed. */
const MAX_FILE_BYTES = 512 * 1024;
/**
 * Text per INSERT. The embedded database tokenizes and indexes a statement's
 * rows on this thread: measured on PGlite, 1 MB took 0.4–1.4 s, 64 KB stays
 * around 50 ms (75 ms on a busy machine), while one file of 130–520 KB in a
 * statement of its own took 100–206 ms.
 */
const BATCH_TEXT_BYTES = 64 * 1024;
/** A file's text longer than this (UTF-16 code units, as BATCH_TEXT_BYTES counts) is stored in parts of at most this. */
export const PART_CHARS = BATCH_TEXT_BYTES;
/** Blob ids per set-difference query, and path rows per INSERT. */
const ID_BATCH = 500;
/** Bytes read from the store at once, so a repository of large files is never held whole in memory. */
const READ_BATCH_BYTES = 8 * 1024 * 1024;

export interface IndexResult {
  commitSha: string;
  /** Text files of the commit. */
  fileCount: number;
  /** False when the commit was already indexed. */
  indexed: boolean;
  /** Blobs this call read and stored (0 when the commit was already indexed). */
  newBlobs: number;
}

export interface RepositoryIndexerOptions {
  /** Serializes indexing per commit; with several server processes, locks that hold across them. Default: this process only. */
  locks?: KeyedLock;
  /** Where a background run's end and failure are told. */
  log?: Logger;
  /**
   * Awaited after each batch of writes (READ_BATCH_BYTES of blobs, the path
   * list): the server asks for a checkpoint of the embedded database there,
   * so indexing a large repository does not leave its WAL growing.
   */
  afterBatch?: () => Promise<void>;
}

type BlobRow = typeof repoIndexBlobs.$inferInsert;

interface CommitFile {
  path: string;
  blobId: string;
  size: number;
}

export class RepositoryIndexer {
  private readonly locks: KeyedLock;
  private readonly log: Logger | undefined;
  private readonly afterBatch: () => Promise<void>;
  /** Background runs under way in this process, by repository key and commit. */
  private readonly running = new Map<string, Promise<void>>();
  private readonly closing = new AbortController();

  constructor(
    private readonly db: Db,
    private readonly store: RepositoryStore,
    private readonly clock: Clock,
    options: RepositoryIndexerOptions = {},
  ) {
    this.locks = options.locks ?? new KeyedMutex();
    this.log = options.log;
    this.afterBatch = options.afterBatch ?? (async () => {});
  }

  async indexCommit(repoUrl: string, commitSha: string): Promise<IndexResult> {
    const repoKey = this.store.repoKey(repoUrl);
    const existing = await this.indexedFileCount(repoKey, commitSha);
    if (existing !== null) return { commitSha, fileCount: existing, indexed: false, newBlobs: 0 };
    return this.locks.run(`umbra-index:${repoKey}:${commitSha}`, async () => {
      const done = await this.indexedFileCount(repoKey, commitSha);
      if (done !== null) return { commitSha, fileCount: done, indexed: false, newBlobs: 0 };
      this.closing.signal.throwIfAborted();
      const files = (await this.store.listBlobs(repoUrl, commitSha)).filter((f) => f.size <= MAX_FILE_BYTES);
      const newBlobs = await this.storeMissingBlobs(repoUrl, repoKey, files);
      const fileCount = await this.storePaths(repoKey, commitSha, files);
      await this.db
        .insert(repoIndexCommits)
        .values({ repoKey, commitSha, fileCount, indexedAt: this.clock.now() })
        .onConflictDoNothing();
      return { commitSha, fileCount, indexed: true, newBlobs };
    });
  }

  /**
   * Indexes `commitSha` unless it is indexed or being indexed here, without
   * waiting for it; "indexed" when there is nothing to do.
   */
  async indexInBackground(repoUrl: string, commitSha: string): Promise<"indexed" | "started" | "under way"> {
    const key = `${this.store.repoKey(repoUrl)}:${commitSha}`;
    if (this.running.has(key)) return "under way";
    if (await this.isIndexed(repoUrl, commitSha)) return "indexed";
    if (this.running.has(key)) return "under way";
    this.closing.signal.throwIfAborted();
    const started = performance.now();
    const run = this.indexCommit(repoUrl, commitSha).then(
      (result) =>
        this.log?.info(
          {
            repoUrl,
            commitSha,
            files: result.fileCount,
            newBlobs: result.newBlobs,
            ms: Math.round(performance.now() - started),
          },
          "index.built",
        ),
      (error: unknown) => {
        if (this.closing.signal.aborted) return;
        this.log?.warn(
          { repoUrl, commitSha, err: error },
          "index.failed: search_code answers from a text search until the next initialization indexes it",
        );
      },
    );
    this.running.set(key, run);
    void run.finally(() => this.running.delete(key));
    return "started";
  }

  /** Whether the commit's index is complete. */
  async isIndexed(repoUrl: string, commitSha: string): Promise<boolean> {
    return (await this.indexedFileCount(this.store.repoKey(repoUrl), commitSha)) !== null;
  }

  /** Resolves once the background runs under way here have ended; for tests and benchmarks. */
  async settled(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()]);
  }

  /** Ends the background runs between two statements and waits for them; indexInBackground refuses from then on. */
  async close(): Promise<void> {
    this.closing.abort(new Error("the server is shutting down"));
    await this.settled();
  }

  search(repoUrl: string, commitSha: string, query: string, limit = 10) {
    return searchCommit(this.db, this.store.repoKey(repoUrl), commitSha, query, limit);
  }

  /** Removes a commit's path list; the blobs stay, as other commits may hold them. */
  async forgetCommit(repoUrl: string, commitSha: string): Promise<void> {
    const repoKey = this.store.repoKey(repoUrl);
    const commit = and(eq(repoIndexCommits.repoKey, repoKey), eq(repoIndexCommits.commitSha, commitSha));
    await this.db.delete(repoIndexCommits).where(commit);
    await this.db
      .delete(repoIndexPaths)
      .where(and(eq(repoIndexPaths.repoKey, repoKey), eq(repoIndexPaths.commitSha, commitSha)));
  }

  private async indexedFileCount(repoKey: string, commitSha: string): Promise<number | null> {
    const [row] = await this.db
      .select({ fileCount: repoIndexCommits.fileCount })
      .from(repoIndexCommits)
      .where(and(eq(repoIndexCommits.repoKey, repoKey), eq(repoIndexCommits.commitSha, commitSha)));
    return row ? row.fileCount : null;
  }

  /** Reads and stores the blobs of `files` the repository has not indexed yet; returns how many. */
  private async storeMissingBlobs(repoUrl: string, repoKey: string, files: CommitFile[]): Promise<number> {
    const sizes = new Map(files.map((f) => [f.blobId, f.size]));
    let stored = 0;
    for (const ids of chunks([...sizes.keys()], ID_BATCH)) {
      const missing = await this.missingBlobs(repoKey, ids);
      for (const batch of byBytes(missing, (id) => sizes.get(id)!, READ_BATCH_BYTES)) {
        const contents = await this.store.readBlobs(repoUrl, batch);
        const rows = batch.flatMap((blobId): BlobRow[] => {
          const buffer = contents.get(blobId);
          if (!buffer || !isText(buffer)) return [{ repoKey, blobId, part: 0, firstLine: 1, content: null }];
          // Part 0 last: its row is what says the blob is complete (missingBlobs).
          const parts = splitText(buffer.toString("utf8")).map((p, part) => ({ repoKey, blobId, part, ...p }));
          return [...parts.slice(1), parts[0]!];
        });
        for (const statement of byBytes(rows, (row) => row.content?.length ?? 0, BATCH_TEXT_BYTES)) {
          this.closing.signal.throwIfAborted();
          await this.db.insert(repoIndexBlobs).values(statement).onConflictDoNothing();
          await yieldToEventLoop();
        }
        stored += batch.length;
        await this.afterBatch();
      }
    }
    return stored;
  }

  /**
   * Of `blobIds`, those the repository has no complete row for (part 0): the
   * set difference, in SQL. The lookups here and in storePaths are LATERAL so
   * that each is one probe of the primary key: the embedded database never
   * gathers statistics (no autovacuum), and without them the planner read the
   * whole table into a hash for each batch of 500 (100 ms a statement at
   * 21,000 blobs, growing with the repository).
   */
  private async missingBlobs(repoKey: string, blobIds: string[]): Promise<string[]> {
    const rows = await queryRows<{ blob_id: string }>(
      this.db,
      sql`SELECT id.blob_id FROM jsonb_array_elements_text(${JSON.stringify(blobIds)}::jsonb) AS id(blob_id)
          LEFT JOIN LATERAL (
            SELECT true AS found FROM repo_index_blobs b
            WHERE b.repo_key = ${repoKey} AND b.blob_id = id.blob_id AND b.part = 0 LIMIT 1) b ON true
          WHERE b.found IS NULL`,
    );
    return rows.map((row) => row.blob_id);
  }

  /** Writes the commit's path → blob rows for its text files (blobs with content); returns how many it has. */
  private async storePaths(repoKey: string, commitSha: string, files: CommitFile[]): Promise<number> {
    for (const batch of chunks(files, ID_BATCH)) {
      this.closing.signal.throwIfAborted();
      const rows = batch.map((f) => ({ path: f.path, blob_id: f.blobId }));
      await this.db.execute(
        sql`INSERT INTO repo_index_paths (repo_key, commit_sha, path, blob_id)
            SELECT ${repoKey}, ${commitSha}, f.path, f.blob_id
            FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS f(path text, blob_id text)
            CROSS JOIN LATERAL (
              SELECT FROM repo_index_blobs b
              WHERE b.repo_key = ${repoKey} AND b.blob_id = f.blob_id AND b.part = 0 AND b.content IS NOT NULL
              LIMIT 1) b
            ON CONFLICT DO NOTHING`,
      );
      await yieldToEventLoop();
    }
    await this.afterBatch();
    // Counted, not summed: rows an interrupted run left are the commit's too.
    const [total] = await queryRows<{ n: number }>(
      this.db,
      sql`SELECT count(*)::int AS n FROM repo_index_paths WHERE repo_key = ${repoKey} AND commit_sha = ${commitSha}`,
    );
    return total?.n ?? 0;
  }
}

/**
 * Lets timers and I/O run: with PGlite each statement runs on this thread. A
 * timer, not setImmediate: an immediate queued from the poll phase runs in the
 * same loop iteration, so two statements could run back to back with no timer
 * in between.
 */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

function* chunks<T>(items: T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/** `items` in order, in groups of at most `limit` bytes (an item larger than that alone). */
function* byBytes<T>(items: T[], bytesOf: (item: T) => number, limit: number): Generator<T[]> {
  let batch: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = bytesOf(item);
    if (batch.length > 0 && bytes + size > limit) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(item);
    bytes += size;
  }
  if (batch.length > 0) yield batch;
}

/**
 * `text` in parts of at most PART_CHARS, each ending at a line end where the
 * part holds one (a longer line is cut where the limit falls, never inside a
 * surrogate pair), with the line each begins on.
 */
export function splitText(text: string): { content: string; firstLine: number }[] {
  const parts: { content: string; firstLine: number }[] = [];
  let start = 0;
  let line = 1;
  do {
    let end = Math.min(start + PART_CHARS, text.length);
    if (end < text.length) {
      const lineEnd = text.lastIndexOf("\n", end - 1);
      if (lineEnd >= start) end = lineEnd + 1;
      else if (/[\uD800-\uDBFF]/.test(text[end - 1]!)) end--;
    }
    const content = text.slice(start, end);
    parts.push({ content, firstLine: line });
    for (let i = content.indexOf("\n"); i !== -1; i = content.indexOf("\n", i + 1)) line++;
    start = end;
  } while (start < text.length);
  return parts;
}

/** Text as Postgres can store it: no NUL byte anywhere (git's own test looks at the first 8 KB only). */
function isText(buffer: Buffer): boolean {
  return !buffer.includes(0);
}
