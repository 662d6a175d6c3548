/**
 * 200 warm sandboxes on one server (--quick: 40): remote mode, the `process`
 * provider, the `shell` agent, PGlite, a small repository.
 *
 * 1. Floor: with one warm task (COMPLETED, workspace ACTIVE), warm follow-ups
 *    running `true`, each timed POST /api/tasks/:id/messages →
 *    `task-status-update` RUNNING on the socket (follow-up.ts's warm figure).
 * 2. The other tasks are brought up, a few at a time, each until COMPLETED
 *    with its workspace ACTIVE. The warm window and the health-check interval
 *    are an hour, so no timer cleans or probes a sandbox during the section.
 *    A task that fails is counted and the next one tried; three failures in
 *    a row stop the bring-up (a limit of the host): the count reached and
 *    the reasons become the section's rows.
 * 3. With all of them warm: per-sandbox RSS and PSS (bench/lib/memory.ts),
 *    the PSS of all sandboxes, the server's RSS (server and one client share
 *    this process), the host's MemAvailable, the CPU the idle sandboxes use
 *    over IDLE_WINDOW_MS; then warm follow-ups over
 *    every task, round after round, one at a time, timed as in step 1.
 * 4. Every task is deleted, which destroys its sandbox; afterwards no
 *    sandbox may remain. On failure the same deletion runs, and closing the
 *    server destroys anything left and fails if a process of it remains.
 */
import { hostMemoryAvailable, type SandboxMemory, sandboxMemory, settleMemory } from "../lib/memory";
import { createSmallRepo, settleDisk } from "../lib/repos";
import type { Row, Section, SectionResult } from "../lib/section";
import { type BenchServer, startBenchServer } from "../lib/server";
import { formatBytes, formatMs, rounded, type Summary, summarize } from "../lib/stats";

/**
 * Tasks created at once while bringing the sandboxes up. Starting sandboxes
 * is CPU-bound, so more at once is not faster on 2 cores, only makes each
 * start slower and closer to the sidecar's start timeout (30 s) when the
 * machine is shared.
 */
const BRING_UP_CONCURRENCY = 4;
/** This many failures in a row is a limit of the host, not bad luck: the bring-up stops there. */
const FAILURES_IN_A_ROW = 3;
/** How long the idle sandboxes' CPU time is watched. */
const IDLE_WINDOW_MS = 5000;
const ROUNDS = 2;
/** Longer than the section: no warm window ends and no periodic health check runs while it measures. */
const AN_HOUR_MS = 3_600_000;
const TARGET_P99_MS = 50;

/** Waits for the end of the task's turn after event index `from`; throws unless it COMPLETED with its workspace ACTIVE. */
async function turnEnd(s: BenchServer, taskId: string, from: number): Promise<void> {
  const end = await s.client.waitFor(taskId, (e) => ["COMPLETED", "FAILED", "STOPPED"].includes(e.status), { from });
  const { status, initStatus, initializationError, errorMessage } = end.event;
  if (status !== "COMPLETED" || initStatus !== "ACTIVE") {
    throw new Error(`${status}/${initStatus}: ${initializationError ?? errorMessage ?? "no reason given"}`);
  }
}

/** One warm follow-up running `true`: POST → RUNNING in ms, then waits for its turn to end. */
async function warmFollowUp(s: BenchServer, taskId: string): Promise<{ ms: number; warm: boolean }> {
  const from = s.client.count(taskId);
  const began = performance.now();
  const answer = await s.followUp(taskId, "true");
  const running = await s.client.waitForStatus(taskId, "RUNNING", { from });
  await turnEnd(s, taskId, from);
  return { ms: running.monoMs - began, warm: answer.status === "RUNNING" };
}

/** Warm follow-ups on each of `taskIds` in turn, one at a time; their POST → RUNNING times and how many found no warm workspace. */
async function timeFollowUps(s: BenchServer, taskIds: string[]): Promise<{ ms: number[]; notWarm: number }> {
  const ms: number[] = [];
  let notWarm = 0;
  for (const taskId of taskIds) {
    const r = await warmFollowUp(s, taskId);
    ms.push(r.ms);
    if (!r.warm) notWarm++;
  }
  return { ms, notWarm };
}

interface BringUp {
  /** Tasks that reached COMPLETED with their workspace ACTIVE. */
  warm: string[];
  /** Every task created, warm or not: all are deleted at the end. */
  created: string[];
  /** Why each task that did not come up failed, in order. */
  failures: string[];
  /** Set when FAILURES_IN_A_ROW failed in a row: the bring-up stopped there. */
  stopped: boolean;
  ms: number;
}

/**
 * Brings `count` more tasks up, BRING_UP_CONCURRENCY at a time, into `into`
 * (its `ms` becomes the time of these). A task that fails is counted and
 * the next one tried; FAILURES_IN_A_ROW failures in a row stop the bring-up.
 */
async function bringUp(s: BenchServer, repoUrl: string, count: number, into: BringUp): Promise<void> {
  const began = performance.now();
  let next = 0;
  let inARow = 0;
  const worker = async () => {
    while (!into.stopped && next < count) {
      next++;
      try {
        const task = await s.createTask(repoUrl, "true");
        into.created.push(task.id);
        await s.client.join(task.id);
        await turnEnd(s, task.id, 0);
        into.warm.push(task.id);
        inARow = 0;
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        into.failures.push(`with ${into.warm.length} warm: ${reason}`);
        if (++inARow >= FAILURES_IN_A_ROW) into.stopped = true;
      }
    }
  };
  await Promise.all(Array.from({ length: BRING_UP_CONCURRENCY }, worker));
  into.ms = performance.now() - began;
}

/** Deletes every task, BRING_UP_CONCURRENCY at a time; returns how long it took and what failed. */
async function deleteAll(s: BenchServer, taskIds: string[]): Promise<{ ms: number; errors: string[] }> {
  const began = performance.now();
  const errors: string[] = [];
  const queue = [...taskIds];
  const worker = async () => {
    for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
      await s.deleteTask(id).catch((error: unknown) => errors.push(`${id}: ${String(error)}`));
    }
  };
  await Promise.all(Array.from({ length: BRING_UP_CONCURRENCY }, worker));
  return { ms: performance.now() - began, errors };
}

/** Cores' worth of CPU the sandboxes under `dataDir` use together while nothing is asked of them. */
async function idleCpu(dataDir: string): Promise<number> {
  const before = new Map(sandboxMemory(dataDir).map((x) => [x.taskId, x.cpuSeconds]));
  const began = performance.now();
  await new Promise((resolve) => setTimeout(resolve, IDLE_WINDOW_MS));
  let used = 0;
  for (const x of sandboxMemory(dataDir)) used += x.cpuSeconds - (before.get(x.taskId) ?? x.cpuSeconds);
  return used / ((performance.now() - began) / 1000);
}

interface HostReadings {
  serverRssBytes: number;
  hostAvailableBytes: number;
}

/** This process's RSS (the server and one client) and the host's MemAvailable, after garbage collection. */
async function hostReadings(): Promise<HostReadings> {
  await settleMemory();
  return { serverRssBytes: process.memoryUsage.rss(), hostAvailableBytes: hostMemoryAvailable() };
}

/** Deletes every task and checks that no sandbox outlived them; how long the deletion took, ms. */
async function deleteEvery(s: BenchServer, taskIds: string[]): Promise<number> {
  const deletion = await deleteAll(s, taskIds);
  if (deletion.errors.length > 0) throw new Error(`deleting the tasks failed: ${deletion.errors.join("; ")}`);
  const left = sandboxMemory(s.t.dataDir).length;
  if (left > 0) throw new Error(`${left} sandboxes outlived their tasks`);
  return deletion.ms;
}

interface Measured {
  target: number;
  floor: Summary;
  atScale: Summary;
  notWarm: number;
  bringUp: BringUp;
  memory: SandboxMemory[];
  /** With one warm sandbox. */
  one: HostReadings;
  /** With all of them warm. */
  all: HostReadings;
  /** Cores' worth of CPU all the idle warm sandboxes used together. */
  idleCores: number;
  deleteMs: number;
}

async function measure(target: number, floorCount: number, log: (m: string) => void): Promise<Measured> {
  const repo = createSmallRepo();
  const s = await startBenchServer("remote", {
    env: {
      MAX_ACTIVE_WORKSPACES: String(target),
      TASK_CLEANUP_DELAY_MS: String(AN_HOUR_MS),
      HEALTH_CHECK_INTERVAL_MS: String(AN_HOUR_MS),
    },
  });
  const bring: BringUp = { warm: [], created: [], failures: [], stopped: false, ms: 0 };
  let deleted = false;
  try {
    // The first task fetches and indexes the repository; it is the floor's warm task, then one of the many.
    await bringUp(s, repo.path, 1, bring);
    if (bring.warm.length === 0) throw new Error(`the first sandbox did not come up: ${bring.failures[0]}`);
    settleDisk();
    const floorRun = await timeFollowUps(s, Array<string>(floorCount).fill(bring.warm[0]!));
    const floor = summarize(floorRun.ms);
    log(`floor, one warm sandbox: p50 ${formatMs(floor.p50)}, p99 ${formatMs(floor.p99)} (n=${floor.n})`);
    const one = await hostReadings();

    // bring.ms becomes the time of these: the first task, above, also fetched and indexed the repository.
    await bringUp(s, repo.path, target - 1, bring);
    log(
      `${bring.warm.length} of ${target} warm in ${formatMs(bring.ms)}` +
        (bring.failures.length > 0 ? `; ${bring.failures.length} failed, first: ${bring.failures[0]}` : ""),
    );

    settleDisk();
    const all = await hostReadings();
    const memory = sandboxMemory(s.t.dataDir);
    const idleCores = await idleCpu(s.t.dataDir);

    const scaleRun = await timeFollowUps(s, Array.from({ length: ROUNDS }, () => bring.warm).flat());
    const atScale = summarize(scaleRun.ms);
    log(`with ${bring.warm.length} warm: p50 ${formatMs(atScale.p50)}, p99 ${formatMs(atScale.p99)} (n=${atScale.n})`);

    deleted = true;
    const deleteMs = await deleteEvery(s, bring.created);
    return {
      target,
      floor,
      atScale,
      notWarm: floorRun.notWarm + scaleRun.notWarm,
      bringUp: bring,
      memory,
      one,
      all,
      idleCores,
      deleteMs,
    };
  } finally {
    if (!deleted) await deleteAll(s, bring.created);
    await s.close();
  }
}

function rowsOf(m: Measured): Row[] {
  const n = m.bringUp.warm.length;
  const complete = n === m.target;
  const ratio = m.atScale.p99 / m.floor.p99;
  const total = m.memory.reduce((sum, x) => sum + x.pssBytes, 0);
  const rss = summarize(m.memory.map((x) => x.rssBytes));
  const pss = summarize(m.memory.map((x) => x.pssBytes));
  const rows: Row[] = [
    {
      metric: `warm sandboxes brought up (${BRING_UP_CONCURRENCY} at a time)`,
      value:
        `${n} of ${m.target}, the last ${n - 1} in ${formatMs(m.bringUp.ms)}` +
        (m.bringUp.failures.length > 0
          ? `; ${m.bringUp.failures.length} failed${m.bringUp.stopped ? ` (${FAILURES_IN_A_ROW} in a row: stopped)` : ""}, first: ${m.bringUp.failures[0]}`
          : ""),
      target: `${m.target}`,
      met: complete,
    },
    {
      metric: `warm follow-up p99 with ${n} warm sandboxes (POST → RUNNING)`,
      value: `${formatMs(m.atScale.p99)} = ${ratio.toFixed(1)}× floor`,
      target: `≤ ${TARGET_P99_MS} ms`,
      met: complete && m.atScale.p99 <= TARGET_P99_MS,
    },
    {
      metric: `warm follow-up with ${n} warm sandboxes, p50 / p99 / max`,
      value: `${formatMs(m.atScale.p50)} / ${formatMs(m.atScale.p99)} / ${formatMs(m.atScale.max)} (n=${m.atScale.n})`,
    },
    {
      metric: "warm follow-up floor, one warm sandbox, p50 / p99 / max",
      value: `${formatMs(m.floor.p50)} / ${formatMs(m.floor.p99)} / ${formatMs(m.floor.max)} (n=${m.floor.n})`,
    },
    {
      metric: `memory per warm sandbox, RSS / PSS (p50 of ${m.memory.length})`,
      value: `${formatBytes(rss.p50)} / ${formatBytes(pss.p50)}`,
    },
    { metric: `total PSS of ${m.memory.length} warm sandboxes`, value: formatBytes(total) },
    { metric: `CPU of ${m.memory.length} idle warm sandboxes together`, value: `${m.idleCores.toFixed(3)} cores` },
    {
      metric: `server RSS with ${n} warm sandboxes (with one)`,
      value: `${formatBytes(m.all.serverRssBytes)} (${formatBytes(m.one.serverRssBytes)})`,
    },
  ];
  if (m.notWarm > 0) rows.push({ metric: "follow-ups that found no warm workspace", value: `${m.notWarm}` });
  return rows;
}

export const warmSandboxesSection: Section = {
  name: "warm-sandboxes",
  title: "Many warm sandboxes at once",
  async run({ quick, log }): Promise<SectionResult> {
    const m = await measure(quick ? 40 : 200, quick ? 20 : 50, log);
    const bytes = (x: Summary) => rounded(x, 0);
    return {
      rows: rowsOf(m),
      data: {
        target: m.target,
        warm: m.bringUp.warm.length,
        bringUpConcurrency: BRING_UP_CONCURRENCY,
        bringUpMs: Math.round(m.bringUp.ms),
        bringUpFailures: m.bringUp.failures,
        bringUpStopped: m.bringUp.stopped,
        idleSandboxesCpuCores: Math.round(m.idleCores * 1000) / 1000,
        floorFollowUpToRunningMs: rounded(m.floor),
        atScaleFollowUpToRunningMs: rounded(m.atScale),
        atScaleOverFloorP50: Math.round((m.atScale.p50 / m.floor.p50) * 100) / 100,
        atScaleOverFloorP99: Math.round((m.atScale.p99 / m.floor.p99) * 100) / 100,
        followUpsThatWereNotWarm: m.notWarm,
        sandboxes: m.memory.length,
        sandboxRss: bytes(summarize(m.memory.map((x) => x.rssBytes))),
        sandboxPss: bytes(summarize(m.memory.map((x) => x.pssBytes))),
        sandboxProcesses: bytes(summarize(m.memory.map((x) => x.processes))),
        totalPssBytes: m.memory.reduce((sum, x) => sum + x.pssBytes, 0),
        serverRssWithOneBytes: m.one.serverRssBytes,
        serverRssWithAllBytes: m.all.serverRssBytes,
        hostMemAvailableWithOneBytes: m.one.hostAvailableBytes,
        hostMemAvailableWithAllBytes: m.all.hostAvailableBytes,
        deleteAllMs: Math.round(m.deleteMs),
      },
    };
  },
};
