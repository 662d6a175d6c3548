/**
 * INDEX_REPOSITORY's full-text index, keyed by content: a file's text is
 * stored once per (repository, blob) and shared by every commit that has it;
 * a commit adds its path list. Real git repositories, PGlite and Postgres.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { openDatabase, PgAdvisoryLocks, queryRows } from "@repo/db";
import { sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { type DatabaseTarget, databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { createRepo, git, tempDir } from "../../../test/support/git";
import { createLogger } from "../src/logger";
import { PART_CHARS, RepositoryIndexer, splitText } from "../src/repository/indexer";
import { RepositoryStore } from "../src/repository/repository-store";
import { systemClock } from "../src/utils/clock";

const targets = await databaseTargets();
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** 20 text files of 500 KB (10 MB in all), one binary file and one text file over the size limit. */
function repositoryOfLargeTextFiles(): string {
  const files: Record<string, string> = {};
  for (let i = 0; i < 20; i++) {
    const line = `file${i} holds the word marker${i} among filler words\n`;
    files[`text/file-${i}.txt`] = line.repeat(Math.floor(500_000 / line.length));
  }
  files["binary.bin"] = `\0${"x".repeat(1000)} binaryword`;
  files["too-large.txt"] = "oversized ".repeat(60_000);
  return repository(files);
}

function repository(files: Record<string, string>): string {
  const repo = createRepo(files);
  dirs.push(repo);
  return repo;
}

/** Ten small source files, each with a word of its own. */
function tenFiles(): Record<string, string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < 10; i++) files[`src/module-${i}.ts`] = `export const value${i} = "token${i}";\n`;
  return files;
}

/** Writes `files` into `repo` and removes `removed`, then commits. */
function commit(repo: string, files: Record<string, string>, removed: string[] = []): void {
  for (const path of removed) git(repo, "rm", "--quiet", path);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(repo, path)), { recursive: true });
    writeFileSync(join(repo, path), content);
  }
  git(repo, "add", "-A");
  git(repo, "commit", "--quiet", "-m", "change");
}

function newStore(): RepositoryStore {
  const dir = tempDir("umbra-index-store-");
  dirs.push(dir);
  return new RepositoryStore(join(dir, "repos"));
}

async function headOf(store: RepositoryStore, repo: string): Promise<string> {
  return (await store.prepareBase(repo, null)).baseCommitSha;
}

async function countRows(database: TestDatabase, table: "repo_index_blobs" | "repo_index_paths"): Promise<number> {
  const [row] = await queryRows<{ n: number }>(database.db, sql`SELECT count(*)::int AS n FROM ${sql.raw(table)}`);
  return row!.n;
}

async function paths(indexer: RepositoryIndexer, repo: string, sha: string, query: string): Promise<string[]> {
  return (await indexer.search(repo, sha, query, 50)).map((hit) => hit.path).sort();
}

async function withDatabase(target: DatabaseTarget, fn: (database: TestDatabase) => Promise<void>): Promise<void> {
  const database = await target.open();
  try {
    await fn(database);
  } finally {
    await database.close();
  }
}

describe.each(targets)("the full-text index on $name", (target) => {
  it("indexes every text file of a repository larger than one read, and skips binary and oversized files", async () => {
    const repo = repositoryOfLargeTextFiles();
    const store = newStore();
    const sha = await headOf(store, repo);
    expect(sha).toBe(git(repo, "rev-parse", "HEAD"));
    await withDatabase(target, async (database) => {
      let batches = 0;
      const indexer = new RepositoryIndexer(database.db, store, systemClock, {
        afterBatch: async () => void batches++,
      });
      // 20 text blobs and the binary one (kept without content, so it is not read again); not the oversized file.
      expect(await indexer.indexCommit(repo, sha)).toEqual({
        commitSha: sha,
        fileCount: 20,
        indexed: true,
        newBlobs: 21,
      });
      for (const i of [0, 19]) expect(await paths(indexer, repo, sha, `marker${i}`)).toEqual([`text/file-${i}.txt`]);
      expect(await indexer.search(repo, sha, "oversized")).toEqual([]);
      expect(await indexer.search(repo, sha, "binaryword")).toEqual([]);
      expect(await countRows(database, "repo_index_paths")).toBe(20);
      // Two reads of blobs (10 MB, 8 MB a read) and the path list, each followed by the hook (the server's checkpoint).
      expect(batches).toBe(3);
    });
  }, 300_000);

  it("a second commit that changes 2 of 10 files stores exactly 2 new blobs and shares the other 8", async () => {
    const repo = repository(tenFiles());
    const store = newStore();
    const first = await headOf(store, repo);
    commit(repo, { "src/module-3.ts": 'export const value3 = "changed3";\n', "src/module-7.ts": "// changed7\n" });
    const second = await headOf(store, repo);
    await withDatabase(target, async (database) => {
      const indexer = new RepositoryIndexer(database.db, store, systemClock);
      expect(await indexer.indexCommit(repo, first)).toEqual({
        commitSha: first,
        fileCount: 10,
        indexed: true,
        newBlobs: 10,
      });
      expect(await countRows(database, "repo_index_blobs")).toBe(10);
      expect(await indexer.indexCommit(repo, second)).toEqual({
        commitSha: second,
        fileCount: 10,
        indexed: true,
        newBlobs: 2,
      });
      expect(await countRows(database, "repo_index_blobs")).toBe(12);
      expect(await countRows(database, "repo_index_paths")).toBe(20);
      // Again: already indexed, nothing read or stored.
      expect(await indexer.indexCommit(repo, second)).toEqual({
        commitSha: second,
        fileCount: 10,
        indexed: false,
        newBlobs: 0,
      });
      expect(await countRows(database, "repo_index_blobs")).toBe(12);

      expect(await paths(indexer, repo, first, "token3")).toEqual(["src/module-3.ts"]);
      expect(await paths(indexer, repo, second, "token3")).toEqual([]);
      expect(await paths(indexer, repo, second, "changed3")).toEqual(["src/module-3.ts"]);
      expect(await paths(indexer, repo, first, "changed3")).toEqual([]);
      expect(await paths(indexer, repo, second, "token5")).toEqual(["src/module-5.ts"]);
    });
  }, 120_000);

  it("finds a file renamed between two commits under its name in each", async () => {
    const repo = repository({ "src/old-name.ts": "const renamedword = 1;\n", "README.md": "# Demo\n" });
    const store = newStore();
    const first = await headOf(store, repo);
    git(repo, "mv", "src/old-name.ts", "src/new-name.ts");
    git(repo, "commit", "--quiet", "-m", "rename");
    const second = await headOf(store, repo);
    await withDatabase(target, async (database) => {
      const indexer = new RepositoryIndexer(database.db, store, systemClock);
      await indexer.indexCommit(repo, first);
      expect((await indexer.indexCommit(repo, second)).newBlobs).toBe(0);
      expect(await countRows(database, "repo_index_blobs")).toBe(2);
      expect(await paths(indexer, repo, first, "renamedword")).toEqual(["src/old-name.ts"]);
      expect(await paths(indexer, repo, second, "renamedword")).toEqual(["src/new-name.ts"]);
    });
  }, 120_000);

  it("returns every path that holds the same content, stored once", async () => {
    const repo = repository({ "a/copy.txt": "twinword\n", "b/copy.txt": "twinword\n", "c.txt": "other\n" });
    const store = newStore();
    const sha = await headOf(store, repo);
    await withDatabase(target, async (database) => {
      const indexer = new RepositoryIndexer(database.db, store, systemClock);
      expect(await indexer.indexCommit(repo, sha)).toEqual({
        commitSha: sha,
        fileCount: 3,
        indexed: true,
        newBlobs: 2,
      });
      expect(await countRows(database, "repo_index_blobs")).toBe(2);
      expect(await paths(indexer, repo, sha, "twinword")).toEqual(["a/copy.txt", "b/copy.txt"]);
    });
  }, 120_000);

  it("matches and ranks a file by the words of its path as well as its content", async () => {
    const repo = repository({
      "src/scheduler/queue.ts": "export function enqueue() {}\n",
      "src/other.ts": "// the scheduler is elsewhere\nexport function enqueue() {}\n",
      "docs/readme.md": "nothing relevant\n",
    });
    const store = newStore();
    const sha = await headOf(store, repo);
    await withDatabase(target, async (database) => {
      const indexer = new RepositoryIndexer(database.db, store, systemClock);
      await indexer.indexCommit(repo, sha);
      // "queue" is only in a path; "scheduler enqueue" is split between path and content for queue.ts.
      expect(await paths(indexer, repo, sha, "queue")).toEqual(["src/scheduler/queue.ts"]);
      const hits = await indexer.search(repo, sha, "scheduler enqueue");
      expect(hits.map((hit) => hit.path)).toEqual(["src/scheduler/queue.ts", "src/other.ts"]);
      expect(hits[0]!.rank).toBeGreaterThan(hits[1]!.rank);
      expect(hits[1]!.snippet).toBe("1: // the scheduler is elsewhere\n2: export function enqueue() {}\n3: ");
    });
  }, 120_000);

  it("stores a file larger than a part in parts cut at line ends, and finds a word of any part on its line", async () => {
    // 3,000 numbered lines of about 55 characters (160 KB): three parts. A word of its own on line 2,900.
    const lines = Array.from({ length: 3000 }, (_, i) => `line ${i + 1} of a large generated file with filler words`);
    lines[2899] = "line 2900 holds the deepword";
    const text = `${lines.join("\n")}\n`;
    const repo = repository({ "gen/large.txt": text, "small.txt": "a deepword too\n" });
    const store = newStore();
    const sha = await headOf(store, repo);
    await withDatabase(target, async (database) => {
      const indexer = new RepositoryIndexer(database.db, store, systemClock);
      expect((await indexer.indexCommit(repo, sha)).newBlobs).toBe(2);
      const parts = await queryRows<{ part: number; first_line: number; content: string }>(
        database.db,
        sql`SELECT part, first_line, content FROM repo_index_blobs
            WHERE blob_id = ${git(repo, "rev-parse", `${sha}:gen/large.txt`)} ORDER BY part`,
      );
      expect(parts.map((p) => p.part)).toEqual([0, 1, 2]);
      expect(parts.map((p) => p.content).join("")).toBe(text);
      for (const p of parts) {
        expect(p.content.length).toBeLessThanOrEqual(PART_CHARS);
        expect(p.content.endsWith("\n")).toBe(true);
        expect(text.split("\n")[p.first_line - 1]).toBe(p.content.split("\n")[0]);
      }
      const hits = await indexer.search(repo, sha, "deepword");
      expect(hits.map((hit) => hit.path).sort()).toEqual(["gen/large.txt", "small.txt"]);
      const large = hits.find((hit) => hit.path === "gen/large.txt")!;
      expect(large.snippet.split("\n")).toEqual([
        "2898: line 2898 of a large generated file with filler words",
        "2899: line 2899 of a large generated file with filler words",
        "2900: line 2900 holds the deepword",
        "2901: line 2901 of a large generated file with filler words",
        "2902: line 2902 of a large generated file with filler words",
      ]);
      // Listed once, however many of its parts match.
      expect(await paths(indexer, repo, sha, "filler")).toEqual(["gen/large.txt"]);
    });
  }, 120_000);

  it("completes a blob whose parts an interrupted run left without part 0", async () => {
    const text = `${"a line of text with the word partword\n".repeat(4000)}`;
    const repo = repository({ "big.txt": text });
    const store = newStore();
    const sha = await headOf(store, repo);
    const blobId = git(repo, "rev-parse", `${sha}:big.txt`);
    await withDatabase(target, async (database) => {
      // What a run ended between two statements leaves: the later parts, not part 0.
      const [, second] = splitText(text);
      await database.db.execute(
        sql`INSERT INTO repo_index_blobs (repo_key, blob_id, part, first_line, content)
            VALUES (${store.repoKey(repo)}, ${blobId}, 1, ${second!.firstLine}, ${second!.content})`,
      );
      const indexer = new RepositoryIndexer(database.db, store, systemClock);
      expect(await indexer.indexCommit(repo, sha)).toEqual({
        commitSha: sha,
        fileCount: 1,
        indexed: true,
        newBlobs: 1,
      });
      const parts = await queryRows<{ content: string }>(
        database.db,
        sql`SELECT content FROM repo_index_blobs WHERE blob_id = ${blobId} ORDER BY part`,
      );
      expect(parts.map((p) => p.content).join("")).toBe(text);
      expect(await paths(indexer, repo, sha, "partword")).toEqual(["big.txt"]);
    });
  }, 120_000);

  it("forgetting a commit keeps the blobs another commit shares", async () => {
    const repo = repository(tenFiles());
    const store = newStore();
    const first = await headOf(store, repo);
    commit(repo, { "src/module-0.ts": "// rewritten0\n" });
    const second = await headOf(store, repo);
    await withDatabase(target, async (database) => {
      const indexer = new RepositoryIndexer(database.db, store, systemClock);
      await indexer.indexCommit(repo, first);
      await indexer.indexCommit(repo, second);
      await indexer.forgetCommit(repo, first);
      expect(await countRows(database, "repo_index_blobs")).toBe(11);
      expect(await countRows(database, "repo_index_paths")).toBe(10);
      expect(await paths(indexer, repo, first, "token5")).toEqual([]);
      expect(await paths(indexer, repo, second, "token5")).toEqual(["src/module-5.ts"]);
      // Forgotten means not indexed: asking again rebuilds the path list from the blobs already there.
      expect(await indexer.indexCommit(repo, first)).toEqual({
        commitSha: first,
        fileCount: 10,
        indexed: true,
        newBlobs: 0,
      });
      expect(await paths(indexer, repo, first, "token0")).toEqual(["src/module-0.ts"]);
    });
  }, 120_000);

  it("indexes a commit once when several callers of one process ask at the same time", async () => {
    const repo = repository(tenFiles());
    const store = newStore();
    const sha = await headOf(store, repo);
    await withDatabase(target, async (database) => {
      const indexer = new RepositoryIndexer(database.db, store, systemClock);
      const results = await Promise.all([1, 2, 3, 4].map(() => indexer.indexCommit(repo, sha)));
      expect(results.filter((result) => result.indexed)).toHaveLength(1);
      expect(results.map((result) => result.fileCount)).toEqual([10, 10, 10, 10]);
      expect(results.reduce((sum, result) => sum + result.newBlobs, 0)).toBe(10);
      expect(await countRows(database, "repo_index_blobs")).toBe(10);
    });
  }, 120_000);
});

describe.each(targets)("indexing in the background on $name (INDEX_REPOSITORY)", (target) => {
  it("returns at once, runs one index per commit, and says when the commit is indexed", async () => {
    const repo = repositoryOfLargeTextFiles();
    const store = newStore();
    const sha = await headOf(store, repo);
    await withDatabase(target, async (database) => {
      const indexer = new RepositoryIndexer(database.db, store, systemClock);
      expect(await indexer.indexInBackground(repo, sha)).toBe("started");
      // 10 MB of text takes many statements: the first call has returned long before the commit row exists.
      expect(await indexer.isIndexed(repo, sha)).toBe(false);
      expect(await indexer.indexInBackground(repo, sha)).toBe("under way");
      await indexer.settled();
      expect(await indexer.isIndexed(repo, sha)).toBe(true);
      expect(await paths(indexer, repo, sha, "marker7")).toEqual(["text/file-7.txt"]);
      expect(await indexer.indexInBackground(repo, sha)).toBe("indexed");
      expect(await countRows(database, "repo_index_paths")).toBe(20);
    });
  }, 300_000);

  it("close() ends a run under way between statements, and the next run completes the commit", async () => {
    const repo = repositoryOfLargeTextFiles();
    const store = newStore();
    const sha = await headOf(store, repo);
    await withDatabase(target, async (database) => {
      const first = new RepositoryIndexer(database.db, store, systemClock);
      expect(await first.indexInBackground(repo, sha)).toBe("started");
      await first.close();
      expect(await first.isIndexed(repo, sha)).toBe(false);
      await expect(first.indexInBackground(repo, sha)).rejects.toThrow(/shutting down/);
      // What the ended run wrote is reused; the commit row comes last, so nothing half-done is taken for an index.
      const next = new RepositoryIndexer(database.db, store, systemClock);
      const result = await next.indexCommit(repo, sha);
      expect(result).toMatchObject({ indexed: true, fileCount: 20 });
      expect(result.newBlobs).toBeLessThanOrEqual(21);
      expect(await paths(next, repo, sha, "marker19")).toEqual(["text/file-19.txt"]);
    });
  }, 300_000);

  it("logs a failed run and starts again on the next call", async () => {
    const repo = repository(tenFiles());
    const store = newStore();
    const sha = await headOf(store, repo);
    await withDatabase(target, async (database) => {
      const lines: Array<Record<string, unknown>> = [];
      const log = createLogger("info", { write: (line: string) => lines.push(JSON.parse(line)) });
      const indexer = new RepositoryIndexer(database.db, store, systemClock, { log });
      const missing = "0".repeat(40);
      expect(await indexer.indexInBackground(repo, missing)).toBe("started");
      await indexer.settled();
      expect(lines.find((line) => String(line.msg).startsWith("index.failed"))).toMatchObject({ commitSha: missing });
      expect(await indexer.isIndexed(repo, missing)).toBe(false);
      expect(await indexer.indexInBackground(repo, sha)).toBe("started");
      await indexer.settled();
      expect(lines.find((line) => line.msg === "index.built")).toMatchObject({ commitSha: sha, files: 10 });
    });
  }, 120_000);
});

describe.runIf(targets.some((target) => target.name === "postgres"))("the full-text index across processes", () => {
  it("indexes a commit once when several server processes on one Postgres ask at the same time", async () => {
    const repo = repository(tenFiles());
    const store = newStore();
    const sha = await headOf(store, repo);
    await withDatabase(targets.find((target) => target.name === "postgres")!, async (database) => {
      // Each process has its own connections and its own lock connections, as separate servers do.
      const processes = await Promise.all(
        [1, 2, 3].map(async () => {
          const own = await openDatabase({ databaseUrl: database.url!, poolSize: 2 });
          const locks = new PgAdvisoryLocks({ url: database.url! });
          return { own, locks, indexer: new RepositoryIndexer(own.db, store, systemClock, { locks }) };
        }),
      );
      try {
        const results = await Promise.all(processes.map((p) => p.indexer.indexCommit(repo, sha)));
        expect(results.filter((result) => result.indexed)).toHaveLength(1);
        expect(results.reduce((sum, result) => sum + result.newBlobs, 0)).toBe(10);
        expect(await countRows(database, "repo_index_blobs")).toBe(10);
        expect(await countRows(database, "repo_index_paths")).toBe(10);
      } finally {
        for (const p of processes) {
          await p.locks.close();
          await p.own.close();
        }
      }
    });
  }, 120_000);
});

describe("splitText", () => {
  it("keeps a text within a part whole, and an empty one as one empty part", () => {
    expect(splitText("one\ntwo\n")).toEqual([{ content: "one\ntwo\n", firstLine: 1 }]);
    expect(splitText("")).toEqual([{ content: "", firstLine: 1 }]);
  });

  it("cuts a line longer than a part where the limit falls, never inside a surrogate pair", () => {
    const long = `${"x".repeat(PART_CHARS - 1)}😀${"y".repeat(10)}\nnext\n`;
    const parts = splitText(long);
    expect(parts.map((p) => p.content).join("")).toBe(long);
    expect(parts[0]!.content).toBe("x".repeat(PART_CHARS - 1));
    expect(parts[1]!.content.startsWith("😀")).toBe(true);
    // The cut was inside line 1, so the second part begins on line 1 as well.
    expect(parts.map((p) => p.firstLine)).toEqual([1, 1]);
  });
});
