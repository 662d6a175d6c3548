import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase, queryRows, tasks } from "@repo/db";
import { eq, sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { createScratchPostgres, databaseTargets } from "../../../test/support/databases";

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
