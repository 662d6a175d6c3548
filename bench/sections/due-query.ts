/**
 * The cleanup service's due-task query at scale: 1,000,000 task rows, of
 * which 10,000 carry a cleanup deadline (the partial index
 * `tasks_scheduled_cleanup_at_idx` holds only those) and 1,000 are due. On
 * PGlite (in this process) and on Postgres (over a local TCP connection),
 * each on a fresh database with the real migrations.
 *
 * Rows are made in SQL with generate_series and respect the CHECK
 * constraints: scheduled rows are remote, ACTIVE and COMPLETED / STOPPED /
 * FAILED; the rest are ARCHIVED / INACTIVE with no deadline.
 *
 * Measured, each many times:
 * - the SELECT that finds due tasks, exactly as claimDueCleanups runs it
 *   (ORDER BY deadline, LIMIT 50, FOR UPDATE SKIP LOCKED), and with LIMIT 1000;
 * - the full claim, the real status store's claimDueCleanups (the UPDATE …
 *   RETURNING around that SELECT), the claims reset after every run;
 * - nextCleanupDeadline (min over the partial index);
 * - for comparison, the SELECT with the partial index dropped.
 * EXPLAIN (ANALYZE, BUFFERS) of the SELECT and of the claim goes to the JSON.
 */
import { type Database, openDatabase, queryRows } from "@repo/db";
import { sql } from "drizzle-orm";
import { createLogger } from "../../apps/server/src/logger";
import { createTaskCore } from "../../apps/server/src/services/task-core";
import { systemClock } from "../../apps/server/src/utils/clock";
import { createScratchPostgres, postgresAvailable } from "../../test/support/databases";
import type { Row, Section, SectionResult } from "../lib/section";
import { formatMs, rounded, type Summary, summarize } from "../lib/stats";

const TOTAL_ROWS = 1_000_000;
const SCHEDULED_ROWS = 10_000;
const DUE_ROWS = 1_000;
const WORKER = "bench-worker";

async function fill(db: Database["db"], now: Date, total: number): Promise<void> {
  const chunk = 100_000;
  for (let start = 1; start <= total; start += chunk) {
    const end = Math.min(total, start + chunk - 1);
    await db.execute(sql`
      INSERT INTO tasks (id, title, status, init_status, mode, repo_url, scheduled_cleanup_at, created_at, updated_at)
      SELECT md5('bench-task-' || i)::uuid,
             'task ' || i,
             CASE WHEN i <= ${SCHEDULED_ROWS} THEN (ARRAY['COMPLETED', 'STOPPED', 'FAILED'])[1 + i % 3] ELSE 'ARCHIVED' END::task_status,
             CASE WHEN i <= ${SCHEDULED_ROWS} THEN 'ACTIVE' ELSE 'INACTIVE' END::init_status,
             CASE WHEN i <= ${SCHEDULED_ROWS} OR i % 2 = 0 THEN 'remote' ELSE 'local' END::task_mode,
             '/repos/repo-' || (i % 500),
             CASE WHEN i <= ${DUE_ROWS} THEN ${now.toISOString()}::timestamptz - i * interval '1 second'
                  WHEN i <= ${SCHEDULED_ROWS} THEN ${now.toISOString()}::timestamptz + i * interval '1 second'
             END,
             ${now.toISOString()}::timestamptz - (${total} - i) * interval '1 second',
             ${now.toISOString()}::timestamptz - (${total} - i) * interval '1 second'
      FROM generate_series(${start}::int, ${end}::int) AS i`);
  }
  await db.execute(sql`ANALYZE tasks`);
}

function dueSelect(limit: number) {
  const now = new Date().toISOString();
  return sql`SELECT id FROM tasks
    WHERE scheduled_cleanup_at IS NOT NULL AND scheduled_cleanup_at <= ${now}
      AND (cleanup_claimed_by IS NULL OR cleanup_lease_until < ${now})
    ORDER BY scheduled_cleanup_at
    LIMIT ${limit}
    FOR UPDATE SKIP LOCKED`;
}

/** Times `fn` `runs` times (after a few unmeasured runs that warm caches and plans); `after` runs untimed. */
async function time<T>(runs: number, fn: () => Promise<T>, after?: (value: T) => Promise<void>): Promise<Summary> {
  globalThis.gc?.(); // the bulk insert leaves garbage; collect it before timing, not during
  const samples: number[] = [];
  for (let i = -Math.min(5, runs); i < runs; i++) {
    const t0 = performance.now();
    const value = await fn();
    if (i >= 0) samples.push(performance.now() - t0);
    await after?.(value);
  }
  return summarize(samples);
}

async function explain(db: Database["db"], query: ReturnType<typeof sql>): Promise<string> {
  const rows = await queryRows<Record<string, string>>(db, sql`EXPLAIN (ANALYZE, BUFFERS) ${query}`);
  return rows.map((row) => Object.values(row)[0]).join("\n");
}

async function resetClaims(db: Database["db"], ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await db.execute(sql`UPDATE tasks SET cleanup_claimed_by = NULL, cleanup_lease_until = NULL
    WHERE id IN (${sql.join(
      ids.map((id) => sql`${id}::uuid`),
      sql`, `,
    )})`);
}

async function measure(name: "pglite" | "postgres", database: Database, runs: number, log: (m: string) => void) {
  const { db } = database;
  const [version] = await queryRows<{ version: string }>(db, sql`SELECT version()`);
  let t0 = performance.now();
  await fill(db, new Date(), TOTAL_ROWS);
  const fillSeconds = (performance.now() - t0) / 1000;
  const [counts] = await queryRows<{ total: string; due: string }>(
    db,
    sql`SELECT count(*) AS total, count(*) FILTER (WHERE scheduled_cleanup_at <= now()) AS due FROM tasks`,
  );
  log(`${name}: ${counts?.total} rows (${counts?.due} due) inserted in ${fillSeconds.toFixed(1)} s`);

  const { claims } = createTaskCore({ db, clock: systemClock, cleanupDelayMs: 600_000, log: createLogger("silent") });
  const select50 = await time(runs, () => db.execute(dueSelect(50)));
  const select1000 = await time(Math.ceil(runs / 4), () => db.execute(dueSelect(DUE_ROWS)));
  const claim = await time(
    runs,
    () => claims.claimDue(WORKER, 60_000, 50),
    async (ids) => {
      if (ids.length !== 50) throw new Error(`claimed ${ids.length} tasks, expected 50`);
      await resetClaims(db, ids);
    },
  );
  const nextDeadline = await time(runs, () => claims.nextDeadline());

  // Claiming all 1,000 due tasks, 50 at a time, as one cleanup pass does.
  const passIds: string[] = [];
  t0 = performance.now();
  for (;;) {
    const ids = await claims.claimDue(WORKER, 60_000, 50);
    passIds.push(...ids);
    if (ids.length < 50) break;
  }
  const passMs = performance.now() - t0;
  await resetClaims(db, passIds);

  const selectPlan = await explain(db, dueSelect(50));
  const now = new Date().toISOString();
  const claimPlan = await explain(
    db,
    sql`UPDATE tasks SET cleanup_claimed_by = ${WORKER}, cleanup_lease_until = ${now}::timestamptz + interval '1 minute'
        WHERE id IN (${dueSelect(50)}) RETURNING id`,
  );
  await db.execute(sql`UPDATE tasks SET cleanup_claimed_by = NULL, cleanup_lease_until = NULL
    WHERE scheduled_cleanup_at IS NOT NULL AND cleanup_claimed_by IS NOT NULL`);

  await db.execute(sql`DROP INDEX tasks_scheduled_cleanup_at_idx`);
  const withoutIndex = await time(Math.min(runs, 10), () => db.execute(dueSelect(50)));
  const withoutIndexPlan = await explain(db, dueSelect(50));
  await db.execute(
    sql`CREATE INDEX tasks_scheduled_cleanup_at_idx ON tasks (scheduled_cleanup_at) WHERE scheduled_cleanup_at IS NOT NULL`,
  );

  log(
    `${name}: select p50 ${formatMs(select50.p50)} p99 ${formatMs(select50.p99)}; ` +
      `claim p50 ${formatMs(claim.p50)}; without the index p50 ${formatMs(withoutIndex.p50)}`,
  );
  return {
    name,
    version: version?.version ?? "unknown",
    fillSeconds,
    select50,
    select1000,
    claim,
    nextDeadline,
    passMs,
    passClaimed: passIds.length,
    withoutIndex,
    plans: { select: selectPlan, claim: claimPlan, selectWithoutPartialIndex: withoutIndexPlan },
  };
}

export const dueQuerySection: Section = {
  name: "due-query",
  title: "Due-task query at 1,000,000 rows",
  async run({ quick, log }): Promise<SectionResult> {
    const runs = quick ? 50 : 200;
    const results = [];
    const pglite = await openDatabase();
    try {
      results.push(await measure("pglite", pglite, runs, log));
    } finally {
      await pglite.close();
    }
    if (await postgresAvailable()) {
      const scratch = await createScratchPostgres();
      try {
        const postgres = await openDatabase({ databaseUrl: scratch.url, poolSize: 2 });
        try {
          results.push(await measure("postgres", postgres, runs, log));
        } finally {
          await postgres.close();
        }
      } finally {
        await scratch.drop();
      }
    } else {
      log("Postgres not reachable: measured on PGlite only");
    }
    const rows: Row[] = [];
    for (const r of results) {
      rows.push(
        {
          metric: `${r.name}: due-task SELECT (LIMIT 50) p50 / p99`,
          value: `${formatMs(r.select50.p50)} / ${formatMs(r.select50.p99)}`,
          target: "< 10 ms",
          met: r.select50.p50 < 10,
        },
        {
          metric: `${r.name}: full claim UPDATE (50 tasks) p50 / p99`,
          value: `${formatMs(r.claim.p50)} / ${formatMs(r.claim.p99)}`,
        },
        { metric: `${r.name}: SELECT without the partial index p50`, value: formatMs(r.withoutIndex.p50) },
      );
    }
    return {
      rows,
      data: {
        rows: TOTAL_ROWS,
        scheduled: SCHEDULED_ROWS,
        due: DUE_ROWS,
        databases: results.map((r) => ({
          database: r.name,
          version: r.version,
          fillSeconds: Math.round(r.fillSeconds * 10) / 10,
          selectLimit50Ms: rounded(r.select50, 3),
          selectLimit1000Ms: rounded(r.select1000, 3),
          claim50Ms: rounded(r.claim, 3),
          nextCleanupDeadlineMs: rounded(r.nextDeadline, 3),
          claimAll1000In50sMs: Math.round(r.passMs * 10) / 10,
          claimAll1000Claimed: r.passClaimed,
          selectWithoutPartialIndexMs: rounded(r.withoutIndex, 3),
          explain: r.plans,
        })),
      },
    };
  },
};
