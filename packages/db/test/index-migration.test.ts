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
type Db = Parameters<typeof queryRows>[0];
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

async function tablesOf(db: Db): Promise<string[]> {
  const rows = await queryRows<{ name: string }>(
    db,
    sql`SELECT table_name AS name FROM information_schema.tables
        WHERE table_schema = 'public' AND table_name LIKE 'repo_index_%' ORDER BY table_name`,
  );
  return rows.map((row) => row.name);
}

async function indexedCommits(db: Db): Promise<number> {
  const [row] = await queryRows<{ n: number }>(db, sql`SELECT count(*)::int AS n FROM repo_index_commits`);
  return row!.n;
}

const onPostgres = targets.some((target) => target.name === "postgres");

/**
 * An embedded database migrated up to `last`, given `rows` (SQL), then opened
 * as the server opens it (which applies the later migrations); `check` runs on it.
 */
async function onPgliteFrom(last: number, rows: string, check: (db: Db) => Promise<void>): Promise<void> {
  const dataDir = tempDir("umbra-migrate-pglite-");
  dirs.push(dataDir);
  mkdirSync(join(dataDir, "db"));
  const old = await PGlite.create(join(dataDir, "db"));
  await migratePglite(drizzlePglite(old), { migrationsFolder: migrationsUpTo(last) });
  await old.exec(rows);
  await old.close();
  const database = await openDatabase({ dataDir });
  try {
    await check(database.db);
  } finally {
    await database.close();
  }
}

/** The same on a scratch Postgres database. */
async function onPostgresFrom(last: number, rows: string, check: (db: Db) => Promise<void>): Promise<void> {
  const scratch = await createScratchPostgres();
  try {
    const client = new pg.Client({ connectionString: scratch.url });
    await client.connect();
    try {
      await migratePg(drizzlePg(client), { migrationsFolder: migrationsUpTo(last) });
      await client.query(rows);
    } finally {
      await client.end();
    }
    const database = await openDatabase({ databaseUrl: scratch.url });
    try {
      await check(database.db);
    } finally {
      await database.close();
    }
  } finally {
    await scratch.drop();
  }
}

async function forgotOldIndex(db: Db): Promise<void> {
  expect(await tablesOf(db)).toEqual(["repo_index_blobs", "repo_index_commits", "repo_index_paths"]);
  expect(await indexedCommits(db)).toBe(0);
}

describe("migration 0008, the full-text index keyed by content", () => {
  it("on PGlite drops the old index and forgets the commits it had indexed", async () => {
    await onPgliteFrom(7, OLD_INDEX_ROWS, forgotOldIndex);
  }, 120_000);

  it.runIf(onPostgres)(
    "on Postgres drops the old index and forgets the commits it had indexed",
    async () => {
      await onPostgresFrom(7, OLD_INDEX_ROWS, forgotOldIndex);
    },
    120_000,
  );
});

const INDEXED_BLOB = `
  INSERT INTO repo_index_blobs (repo_key, blob_id, content) VALUES ('/r', 'b1', 'hello world');`;

async function blobRows(db: Db) {
  return queryRows<{ blob_id: string; part: number; first_line: number; content: string }>(
    db,
    sql`SELECT blob_id, part, first_line, content FROM repo_index_blobs ORDER BY blob_id, part`,
  );
}

async function keptAsPartZero(db: Db): Promise<void> {
  expect(await blobRows(db)).toEqual([{ blob_id: "b1", part: 0, first_line: 1, content: "hello world" }]);
}

describe("migration 0009, large files in parts", () => {
  it("on PGlite keeps each indexed blob as its part 0, and takes further parts", async () => {
    await onPgliteFrom(8, INDEXED_BLOB, async (db) => {
      await keptAsPartZero(db);
      await db.execute(
        sql`INSERT INTO repo_index_blobs (repo_key, blob_id, part, first_line, content) VALUES ('/r', 'b1', 1, 9, 'more')`,
      );
      expect((await blobRows(db)).map((row) => row.part)).toEqual([0, 1]);
    });
  }, 120_000);

  it.runIf(onPostgres)(
    "on Postgres keeps each indexed blob as its part 0",
    async () => {
      await onPostgresFrom(8, INDEXED_BLOB, keptAsPartZero);
    },
    120_000,
  );
});
