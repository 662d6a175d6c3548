/**
 * 100 tasks at once through the whole lifecycle, with the `shell` agent,
 * in local mode (on the embedded PGlite, and on Postgres when one is
 * reachable) and in remote mode with the `process` provider:
 * create → initialize → turn → COMPLETED → warm follow-up → COMPLETED →
 * archive → ARCHIVED. All 100 are started together, each with its own
 * Socket.IO client; once every task is warm again (after its follow-up) the
 * workspaces are measured, then all are archived.
 *
 * - throughput: tasks / (first POST → last ARCHIVED);
 * - status-event latency: for every `task-status-update`, client receive
 *   time − the event's server `timestamp` (taken when the change was made,
 *   before its transaction), same host clock;
 * - peak RSS of this process — server and clients share it — sampled every
 *   50 ms, and the kernel's high-water mark (VmHWM, reset before the run);
 * - remote: RSS and PSS of each warm sandbox's process tree from /proc.
 */
import { type Database, openDatabase } from "@repo/db";
import { createScratchPostgres, postgresAvailable } from "../../test/support/databases";
import { StatusClient } from "../lib/client";
import { peakRss, RssSampler, resetPeakRss, type SandboxMemory, sandboxMemory, settleMemory } from "../lib/memory";
import { createSmallRepo, settleDisk } from "../lib/repos";
import type { Row, Section, SectionResult } from "../lib/section";
import { type Mode, startBenchServer } from "../lib/server";
import { formatBytes, formatMs, rounded, summarize } from "../lib/stats";

async function runConcurrent(mode: Mode, count: number, log: (m: string) => void, database?: Database) {
  const repo = createSmallRepo();
  // Every task gets a workspace: the cap (MAX_ACTIVE_WORKSPACES) would answer most of them 429.
  const env = { MAX_ACTIVE_WORKSPACES: String(count + 1) };
  const s = await startBenchServer(mode, database ? { database, env } : { env });
  const label = `${mode}, ${database ? "Postgres" : "PGlite"}`;
  const clients: StatusClient[] = [];
  try {
    // One task first, so the repository is fetched and indexed once, like on a server that has seen it before.
    const warmUp = await s.createTask(repo.path, "true");
    await s.client.join(warmUp.id);
    await s.client.waitForStatus(warmUp.id, "COMPLETED");
    await s.deleteTask(warmUp.id);

    for (let i = 0; i < count; i++) clients.push(await StatusClient.connect(s.t.url));
    settleDisk();
    await settleMemory();
    const baselineRss = process.memoryUsage.rss();
    const hwmReset = resetPeakRss();
    const sampler = new RssSampler(50);
    const began = performance.now();
    let warm!: () => void;
    const allWarm = new Promise<void>((resolve) => {
      warm = resolve;
    });
    let warmCount = 0;
    let memory: SandboxMemory[] = [];
    let archiveStarted = 0;
    const firstCompleted: number[] = [];
    await Promise.all(
      clients.map(async (client, i) => {
        const task = await s.createTask(repo.path, `echo task ${i} > out.txt`);
        await client.join(task.id);
        await client.waitForStatus(task.id, "COMPLETED");
        firstCompleted.push(performance.now() - began);
        let from = client.count(task.id);
        await s.followUp(task.id, "echo follow-up >> out.txt");
        await client.waitForStatus(task.id, "COMPLETED", { from });
        if (++warmCount === count) {
          if (mode === "remote") memory = sandboxMemory(s.t.dataDir);
          archiveStarted = performance.now() - began;
          warm();
        }
        await allWarm;
        from = client.count(task.id);
        await s.archive(task.id);
        await client.waitForStatus(task.id, "ARCHIVED", { from });
      }),
    );
    const seconds = (performance.now() - began) / 1000;
    const sampled = sampler.stop();
    const events = clients.flatMap((c) => c.all);
    const latency = summarize(events.map((e) => e.wallMs - Date.parse(e.event.timestamp)));
    const result = {
      label,
      mode,
      tasks: count,
      seconds,
      tasksPerSecond: count / seconds,
      firstTurnCompletedS: summarize(firstCompleted.map((ms) => ms / 1000)),
      allWarmAtS: archiveStarted / 1000,
      statusEvents: events.length,
      statusEventLatencyMs: latency,
      baselineRssBytes: baselineRss,
      peakRssSampledBytes: sampled.peakBytes,
      peakRssKernelBytes: hwmReset ? peakRss() : null,
      sandboxes: memory.length,
      sandboxRss: summarize(memory.map((m) => m.rssBytes)),
      sandboxPss: summarize(memory.map((m) => m.pssBytes)),
      sandboxProcesses: summarize(memory.map((m) => m.processes)),
    };
    log(
      `${label}: ${count} tasks in ${seconds.toFixed(1)} s (${result.tasksPerSecond.toFixed(2)}/s), ` +
        `status-event p99 ${formatMs(latency.p99)}, peak RSS ${formatBytes(sampled.peakBytes)}` +
        (memory.length > 0 ? `, sandbox PSS p50 ${formatBytes(result.sandboxPss.p50)}` : ""),
    );
    return result;
  } finally {
    for (const client of clients) client.close();
    await s.close();
  }
}

const VARIANTS = ["local", "local-postgres", "remote"] as const;

export const concurrencySection: Section = {
  name: "concurrency",
  title: "Concurrent tasks through the full lifecycle",
  variants: VARIANTS,
  async run({ quick, log, variant = "local" }): Promise<SectionResult> {
    const count = quick ? 20 : 100;
    let r: Awaited<ReturnType<typeof runConcurrent>>;
    if (variant === "local-postgres") {
      if (!(await postgresAvailable())) {
        log("Postgres not reachable: skipped");
        return { rows: [{ metric: "local, Postgres", value: "skipped (no Postgres)" }], data: { skipped: true } };
      }
      const scratch = await createScratchPostgres();
      try {
        const database = await openDatabase({ databaseUrl: scratch.url });
        try {
          r = await runConcurrent("local", count, log, database);
        } finally {
          await database.close();
        }
      } finally {
        await scratch.drop();
      }
    } else {
      r = await runConcurrent(variant === "remote" ? "remote" : "local", count, log);
    }
    const rows: Row[] = [
      {
        metric: `${r.label}: ${r.tasks} tasks, throughput`,
        value: `${r.tasksPerSecond.toFixed(2)} tasks/s (${r.seconds.toFixed(1)} s)`,
      },
      {
        metric: `${r.label}: status-event latency p50 / p99`,
        value: `${formatMs(r.statusEventLatencyMs.p50)} / ${formatMs(r.statusEventLatencyMs.p99)} (n=${r.statusEvents})`,
      },
      {
        metric: `${r.label}: peak RSS, server + ${r.tasks} clients (baseline)`,
        value: `${formatBytes(Math.max(r.peakRssSampledBytes, r.peakRssKernelBytes ?? 0))} (${formatBytes(r.baselineRssBytes)})`,
      },
    ];
    if (r.sandboxes > 0) {
      rows.push({
        metric: `${r.label}: memory per warm sandbox, RSS / PSS (p50, ${r.sandboxes} sandboxes)`,
        value: `${formatBytes(r.sandboxRss.p50)} / ${formatBytes(r.sandboxPss.p50)}`,
      });
    }
    return {
      rows,
      data: {
        ...r,
        seconds: Math.round(r.seconds * 10) / 10,
        tasksPerSecond: Math.round(r.tasksPerSecond * 100) / 100,
        firstTurnCompletedS: rounded(r.firstTurnCompletedS),
        allWarmAtS: Math.round(r.allWarmAtS * 10) / 10,
        statusEventLatencyMs: rounded(r.statusEventLatencyMs),
        sandboxRss: rounded(r.sandboxRss, 0),
        sandboxPss: rounded(r.sandboxPss, 0),
        sandboxProcesses: rounded(r.sandboxProcesses, 0),
      },
    };
  },
};
