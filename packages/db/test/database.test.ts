import { randomUUID } from "node:crypto";
import {
  appendFileSync,
  chownSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MIGRATIONS_FOLDER, openDatabase, PGLITE_START_PARAMS, queryRows, tasks } from "@repo/db";
import { eq, sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createScratchPostgres, databaseTargets, POSTGRES_ADMIN_URL } from "../../../test/support/databases";
import { templateName } from "../src/pglite-template";

const targets = await databaseTargets();

function taskValues(overrides: Partial<typeof tasks.$inferInsert> = {}) {
  const now = new Date();
  return {
    id: randomUUID(),
    title: "t",
    mode: "remote" as const,
    repoUrl: "/r",
    createdAt: now,
    updatedAt: now,
    ...overrides,
  };
}

async function migrationCount(database: Awaited<ReturnType<typeof openDatabase>>) {
  const [row] = await queryRows<{ n: number }>(
    database.db,
    sql`SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`,
  );
  return row?.n;
}

/** A directory's size in bytes, its files only. */
function directoryBytes(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce(
    (sum, entry) => sum + (entry.isFile() ? statSync(join(dir, entry.name)).size : 0),
    0,
  );
}

describe("the embedded database's WAL", () => {
  const dir = mkdtempSync(join(tmpdir(), "umbra-db-wal-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is checkpointed once enough was written since the last checkpoint, so pg_wal stays bounded", async () => {
    const database = await openDatabase({ dataDir: dir });
    try {
      const checkpointIfDue = database.checkpointIfDue!;
      const walSinceCheckpoint = async () => {
        const [row] = await queryRows<{ bytes: string }>(
          database.db,
          sql`SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), redo_lsn)::text AS bytes FROM pg_control_checkpoint()`,
        );
        return Number(row!.bytes);
      };
      await database.db.execute(sql`CREATE TABLE filler (data text)`);
      // About 20 MB of WAL a round: 10,000 rows of 2 KB of hex text, which does not compress.
      const writeRound = () =>
        database.db.execute(sql`INSERT INTO filler
          SELECT (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 64) i)
          FROM generate_series(1, 10000) g`);
      const MB = 1024 * 1024;
      const outcomes: boolean[] = [];
      let written = 0;
      for (let round = 0; round < 8; round++) {
        const before = await walSinceCheckpoint();
        await writeRound();
        written += (await walSinceCheckpoint()) - before;
        outcomes.push(await checkpointIfDue(32 * MB));
      }
      // Due every other round (20 MB each, the threshold 32 MB); each checkpoint moved the redo point up to now.
      expect(outcomes).toEqual([false, true, false, true, false, true, false, true]);
      expect(await walSinceCheckpoint()).toBeLessThan(MB);
      expect(await checkpointIfDue(32 * MB)).toBe(false);
      expect(written).toBeGreaterThan(150 * MB);
      // What was written is more than twice what pg_wal holds: max_wal_size 64 MB, plus the segment in use.
      expect(directoryBytes(join(dir, "db", "pg_wal"))).toBeLessThanOrEqual(96 * MB);
    } finally {
      await database.close();
    }
  }, 120_000);

  it("is left to Postgres, which checkpoints by itself", async () => {
    for (const target of targets) {
      const database = await target.open();
      try {
        expect(typeof database.checkpointIfDue).toBe(target.name === "pglite" ? "function" : "undefined");
      } finally {
        await database.close();
      }
    }
  });
});

describe("PGlite persistence", () => {
  const dir = mkdtempSync(join(tmpdir(), "umbra-db-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("keeps data across close and reopen, and re-applies no migration", async () => {
    const first = await openDatabase({ dataDir: dir });
    const applied = await migrationCount(first);
    expect(applied).toBeGreaterThan(0);
    const row = taskValues();
    await first.db.insert(tasks).values(row);
    await first.close();

    const second = await openDatabase({ dataDir: dir });
    expect(await migrationCount(second)).toBe(applied);
    const [found] = await second.db.select().from(tasks).where(eq(tasks.id, row.id));
    expect(found?.status).toBe("INITIALIZING");
    expect(found?.initStatus).toBe("INACTIVE");
    await second.close();
  });
});

describe("PGlite templates", () => {
  const dir = mkdtempSync(join(tmpdir(), "umbra-db-templates-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const count = async (database: Awaited<ReturnType<typeof openDatabase>>) =>
    (await database.db.select().from(tasks)).length;

  it("makes one template, even for databases created at once, and copies every new database from it", async () => {
    const templateDir = join(dir, "templates");
    const [a, b] = await Promise.all(["a", "b"].map((name) => openDatabase({ dataDir: join(dir, name), templateDir })));
    const entries = readdirSync(templateDir);
    expect(entries).toHaveLength(1); // no half-built template left behind
    expect(entries[0]).toBe(templateName(PGLITE_START_PARAMS, MIGRATIONS_FOLDER));
    expect(statSync(templateDir).mode & 0o777).toBe(0o700);
    const applied = await migrationCount(a!);
    expect(applied).toBeGreaterThan(0);
    expect(await migrationCount(b!)).toBe(applied);
    // Each copy is a database of its own: what one writes, the other and the template never see.
    await a!.db.insert(tasks).values(taskValues());
    expect([await count(a!), await count(b!)]).toEqual([1, 0]);
    await Promise.all([a!.close(), b!.close()]);
    const c = await openDatabase({ dataDir: join(dir, "c"), templateDir });
    expect([await migrationCount(c), await count(c)]).toEqual([applied, 0]);
    await c.close();
  });

  it("removes templates and half-built ones untouched for a week when it builds a new one", async () => {
    const templateDir = join(dir, "old-templates");
    const weekAgo = (Date.now() - 8 * 24 * 3600 * 1000) / 1000;
    for (const [entry, old] of [
      ["pglite-0000000000000000", true],
      [".pglite-0000000000000000-crashed", true],
      ["pglite-1111111111111111", false],
      ["notes", true],
    ] as const) {
      mkdirSync(join(templateDir, entry), { recursive: true, mode: 0o700 });
      if (old) utimesSync(join(templateDir, entry), weekAgo, weekAgo);
    }
    const database = await openDatabase({ dataDir: join(dir, "after-old"), templateDir });
    await database.close();
    expect(readdirSync(templateDir).sort()).toEqual(
      ["notes", "pglite-1111111111111111", templateName(PGLITE_START_PARAMS, MIGRATIONS_FOLDER)!].sort(),
    );
  });

  it("names a template after the migrations, so a changed migration makes a new one", () => {
    const migrations = join(dir, "migrations");
    cpSync(MIGRATIONS_FOLDER, migrations, { recursive: true });
    const name = templateName(PGLITE_START_PARAMS, migrations);
    expect(name).toMatch(/^pglite-[0-9a-f]{16}$/);
    expect(name).toBe(templateName(PGLITE_START_PARAMS, MIGRATIONS_FOLDER));
    appendFileSync(join(migrations, readdirSync(migrations).find((f) => f.endsWith(".sql"))!), "\n-- changed\n");
    expect(templateName(PGLITE_START_PARAMS, migrations)).not.toBe(name);
    expect(templateName([...PGLITE_START_PARAMS, "-c", "work_mem=8MB"], MIGRATIONS_FOLDER)).not.toBe(name);
  });

  it.runIf(process.getuid?.() === 0)("refuses a template directory another user owns, template or not", async () => {
    const templateDir = join(dir, "theirs");
    mkdirSync(templateDir, { mode: 0o700 });
    chownSync(templateDir, 65534, 65534);
    await expect(openDatabase({ dataDir: join(dir, "d"), templateDir })).rejects.toThrow(/belongs to another user/);
    expect(readdirSync(templateDir)).toEqual([]);
    // A valid template, made in a directory of our own (already there when the first test ran).
    await (await openDatabase({ dataDir: join(dir, "own"), templateDir: join(dir, "templates") })).close();
    const name = templateName(PGLITE_START_PARAMS, MIGRATIONS_FOLDER)!;
    cpSync(join(dir, "templates", name), join(templateDir, name), { recursive: true });
    await expect(openDatabase({ dataDir: join(dir, "e"), templateDir })).rejects.toThrow(/belongs to another user/);
    expect(readdirSync(join(dir, "e", "db"))).toEqual([]);
  });
});

describe.runIf(targets.some((t) => t.name === "postgres"))("Postgres migrations", () => {
  it("apply to an empty database and are a no-op on the next open", async () => {
    const scratch = await createScratchPostgres();
    try {
      const first = await openDatabase({ databaseUrl: scratch.url });
      const applied = await migrationCount(first);
      await first.close();
      const [a, b] = await Promise.all([
        openDatabase({ databaseUrl: scratch.url }),
        openDatabase({ databaseUrl: scratch.url }),
      ]);
      expect(await migrationCount(a)).toBe(applied);
      await a.close();
      await b.close();
    } finally {
      await scratch.drop();
    }
  });
});

describe.each(targets)("schema constraints on $name", (target) => {
  it("refuse rows that break the status invariants", async () => {
    const database = await target.open();
    const { db } = database;
    const later = new Date(Date.now() + 60_000);
    const bad: Partial<typeof tasks.$inferInsert>[] = [
      { status: "ARCHIVED", initStatus: "ACTIVE" },
      { status: "ARCHIVED", initStatus: "INACTIVE", scheduledCleanupAt: later },
      { status: "RUNNING", initStatus: "INDEX_REPOSITORY" },
      { status: "COMPLETED", initStatus: "ACTIVE", mode: "local", scheduledCleanupAt: later },
      { status: "RUNNING", initStatus: "ACTIVE", scheduledCleanupAt: later },
      { status: "COMPLETED", initStatus: "INACTIVE", scheduledCleanupAt: later },
      { status: "COMPLETED", initStatus: "ACTIVE", scheduledCleanupAt: later, cleanupClaimedBy: "w" },
    ];
    for (const values of bad) {
      await expect(db.insert(tasks).values(taskValues(values)), JSON.stringify(values)).rejects.toThrow();
    }
    await db.insert(tasks).values(taskValues({ status: "COMPLETED", initStatus: "ACTIVE", scheduledCleanupAt: later }));
    const count = await db.select({ n: sql<number>`count(*)::int` }).from(tasks);
    expect(count[0]?.n).toBe(1);
    await database.close();
  });
});

describe.runIf(targets.some((t) => t.name === "postgres"))("Postgres connections", () => {
  it("give a checked-out connection that ends back to the pool, so closing never waits on it", async () => {
    const scratch = await createScratchPostgres();
    const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
    await admin.connect();
    try {
      const database = await openDatabase({ databaseUrl: scratch.url });
      const pool = (database.db as unknown as { $client: pg.Pool }).$client;
      // Checked out as a transaction checks out, then ended by the server before its holder releases it
      // (as when a transaction's BEGIN fails on a connection terminated a moment before).
      const client = await pool.connect();
      const backend = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
      const ended = new Promise((resolve) => client.once("end", resolve));
      await admin.query("SELECT pg_terminate_backend($1)", [backend]);
      await ended;
      expect(pool.totalCount).toBe(0);
      const closed = await Promise.race([
        database.close().then(() => "closed"),
        new Promise((resolve) => setTimeout(() => resolve("still waiting after 5 s"), 5_000)),
      ]);
      expect(closed).toBe("closed");
      expect(() => client.release()).not.toThrow(); // the holder's own release, later, does nothing
    } finally {
      await admin.end();
      await scratch.drop();
    }
  });
});
