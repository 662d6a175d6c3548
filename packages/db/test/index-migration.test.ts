/**
 * Migration 0008 (the full-text index keyed by content) on a database that
 * already holds an index in the old layout: the old per-commit content table
 * goes, and the commits it had indexed are no longer marked indexed, so they
 * are indexed again on next use. Migration 0009 (large files in parts): the
 * blobs already indexed stay, each as its part 0. PGlite and Postgres.
 */
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { MIGRATIONS_FOLDER, openDatabase, queryRows } from "@repo/db";
import { sql } from "drizzle-orm";
import { drizzle as drizzlePg } from "drizzle-orm/node-postgres";
import { migrate as migratePg } from "drizzle-orm/node-postgres/migrator";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createScratchPostgres, databaseTargets } from "../../../test/support/databases";
import { tempDir } from "../../../test/support/temp-dirs";

const targets = await databaseTargets();
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A copy of the migrations up to and including `last` (0007 is the last one before the content-keyed index). */
function migrationsUpTo(last: number): string {
  const dir = tempDir("umbra-migrations-");
  dirs.push(dir);
  cpSync(MIGRATIONS_FOLDER, dir, { recursive: true });
  const journalPath = join(dir, "meta", "_journal.json");
  const journal = JSON.parse(readFileSync(journalPath, "utf8")) as { entries: { idx: number }[] };
  journal.entries = journal.entries.filter((entry) => entry.idx <= last);
  writeFileSync(journalPath, JSON.stringify(journal));
  return dir;
}

const OLD_INDEX_ROWS = `
  INSERT INTO repo_index_commits (repo_key, commit_sha, file_count, indexed_at) VALUES ('/r', 'c1', 1, now());
  INSERT INTO repo_index_files (repo_key, commit_sha, path, content) VALUES ('/r', 'c1', 'a.txt', 'hello');`;

async function tablesOf(db: Parameters<typeof queryRows>[0]): Promise<string[]> {
  const rows = await queryRows<{ name: string }>(
    db,
    sql`SELECT table_name AS name FROM information_schema.tables
        WHERE table_schema = 'public' AND table_name LIKE 'repo_index_%' ORDER BY table_name`,
  );
  return rows.map((row) => row.name);
}

async function indexedCommits(db: Parameters<typeof queryRows>[0]): Promise<number> {
  const [row] = await queryRows<{ n: number }>(db, sql`SELECT count(*)::int AS n FROM repo_index_commits`);
  return row!.n;
}

describe("migration 0008, the full-text index keyed by content", () => {
  it("on PGlite drops the old index and forgets the commits it had indexed", async () => {
    const dataDir = tempDir("umbra-migrate-pglite-");
    dirs.push(dataDir);
    mkdirSync(join(dataDir, "db"));
    const old = await PGlite.create(join(dataDir, "db"));
    await migratePglite(drizzlePglite(old), { migrationsFolder: migrationsUpTo(7) });
    await old.exec(OLD_INDEX_ROWS);
    await old.close();

    const database = await openDatabase({ dataDir });
    try {
      expect(await tablesOf(database.db)).toEqual(["repo_index_blobs", "repo_index_commits", "repo_index_paths"]);
      expect(await indexedCommits(database.db)).toBe(0);
    } finally {
      await database.close();
    }
  }, 120_000);

  it.runIf(targets.some((target) => target.name === "postgres"))(
    "on Postgres drops the old index and forgets the commits it had indexed",
    async () => {
      const scratch = await createScratchPostgres();
      try {
        const client = new pg.Client({ connectionString: scratch.url });
        await client.connect();
        try {
          await migratePg(drizzlePg(client), { migrationsFolder: migrationsUpTo(7) });
          await client.query(OLD_INDEX_ROWS);
        } finally {
          await client.end();
        }
        const database = await openDatabase({ databaseUrl: scratch.url });
        try {
          expect(await tablesOf(database.db)).toEqual(["repo_index_blobs", "repo_index_commits", "repo_index_paths"]);
          expect(await indexedCommits(database.db)).toBe(0);
        } finally {
          await database.close();
        }
      } finally {
        await scratch.drop();
      }
    },
    120_000,
  );
});

const INDEXED_BLOB = `
  INSERT INTO repo_index_blobs (repo_key, blob_id, content) VALUES ('/r', 'b1', 'hello world');`;

async function blobRows(db: Parameters<typeof queryRows>[0]) {
  return queryRows<{ blob_id: string; part: number; first_line: number; content: string }>(
    db,
    sql`SELECT blob_id, part, first_line, content FROM repo_index_blobs ORDER BY blob_id, part`,
  );
}

describe("migration 0009, large files in parts", () => {
  it("on PGlite keeps each indexed blob as its part 0, and takes further parts", async () => {
    const dataDir = tempDir("umbra-migrate-pglite-");
    dirs.push(dataDir);
    mkdirSync(join(dataDir, "db"));
    const old = await PGlite.create(join(dataDir, "db"));
    await migratePglite(drizzlePglite(old), { migrationsFolder: migrationsUpTo(8) });
    await old.exec(INDEXED_BLOB);
    await old.close();

    const database = await openDatabase({ dataDir });
    try {
      expect(await blobRows(database.db)).toEqual([{ blob_id: "b1", part: 0, first_line: 1, content: "hello world" }]);
      await database.db.execute(
        sql`INSERT INTO repo_index_blobs (repo_key, blob_id, part, first_line, content) VALUES ('/r', 'b1', 1, 9, 'more')`,
      );
      expect((await blobRows(database.db)).map((row) => row.part)).toEqual([0, 1]);
    } finally {
      await database.close();
    }
  }, 120_000);

  it.runIf(targets.some((target) => target.name === "postgres"))(
    "on Postgres keeps each indexed blob as its part 0",
    async () => {
      const scratch = await createScratchPostgres();
      try {
        const client = new pg.Client({ connectionString: scratch.url });
        await client.connect();
        try {
          await migratePg(drizzlePg(client), { migrationsFolder: migrationsUpTo(8) });
          await client.query(INDEXED_BLOB);
        } finally {
          await client.end();
        }
        const database = await openDatabase({ databaseUrl: scratch.url });
        try {
          expect(await blobRows(database.db)).toEqual([
            { blob_id: "b1", part: 0, first_line: 1, content: "hello world" },
          ]);
        } finally {
          await database.close();
        }
      } finally {
        await scratch.drop();
      }
    },
    120_000,
  );
});
