/**
 * Follow-up latency, warm against cold, and re-initialization against first
 * initialization. The `shell` agent runs `true`, so no model time is counted.
 *
 * - Warm: the task is COMPLETED with its workspace ACTIVE; the figure is the
 *   POST of the follow-up → `task-status-update` RUNNING on the socket, both
 *   sent and received by a user in a process of its own (lib/user-process.ts),
 *   as a browser is: a client in this process would share the server's
 *   thread and read the event only after the rest of the request.
 * - Cold: the same after the workspace was cleaned up (remote: the cleanup
 *   service at the end of a short warm window, TASK_CLEANUP_DELAY_MS; local:
 *   the user's archive, there being no timer): POST → RUNNING, through a
 *   whole re-initialization.
 * - Re-initialization (follow-up POST → ACTIVE) is set against the first
 *   initialization of the same task (create POST → ACTIVE), both with the
 *   repository store warm, and against its own floor: `git worktree add` of
 *   the same commit, timed right before each cold follow-up, after the same
 *   cleanup (lib/repos.ts worktreeFloorMs), so both pay what the cleanup's
 *   deletions leave the disk to do.
 *
 * - Floor of the warm figure: one guarded status move with its history row
 *   (the write a warm follow-up makes) on the same database, sampled right
 *   after each warm follow-up (lib/status-floor.ts); the warm figures are
 *   also given as a ratio to it.
 *
 * Each cycle: create a task, `warm` follow-ups, let it be cleaned up, one cold
 * follow-up, delete the task.
 */
import { type BenchRepo, createLargeRepo, createSmallRepo, settleDisk, worktreeFloorMs } from "../lib/repos";
import type { Row, Section, SectionResult } from "../lib/section";
import { type BenchServer, type Mode, startBenchServer } from "../lib/server";
import { formatMs, formatSummary, rounded, type Summary, summarize } from "../lib/stats";
import { type StatusMoveFloor, statusMoveFloor } from "../lib/status-floor";
import { UserProcess } from "../lib/user-process";

const CLEANUP_DELAY_MS = 1500;

interface CycleSamples {
  firstInitMs: number[];
  firstRunningMs: number[];
  warmMs: number[];
  warmPostMs: number[];
  floorMs: number[];
  coldMs: number[];
  reinitMs: number[];
  reinitFloorMs: number[];
  cleanupLagMs: number[];
  notWarm: number;
}

function emptySamples(): CycleSamples {
  return {
    firstInitMs: [],
    firstRunningMs: [],
    warmMs: [],
    warmPostMs: [],
    floorMs: [],
    coldMs: [],
    reinitMs: [],
    reinitFloorMs: [],
    cleanupLagMs: [],
    notWarm: 0,
  };
}

async function runCycle(
  s: BenchServer,
  user: UserProcess,
  floor: StatusMoveFloor,
  repo: BenchRepo,
  warmCount: number,
  into: CycleSamples,
): Promise<void> {
  const { client } = s;
  settleDisk();
  let mono0 = performance.now();
  const task = await s.createTask(repo.path, "true");
  const ack = await client.join(task.id);
  if (ack.ok && ack.task.initStatus === "ACTIVE") throw new Error("joined after ACTIVE; cannot time the first init");
  const firstActive = await client.waitFor(task.id, (e) => e.initStatus === "ACTIVE");
  const firstRunning = await client.waitForStatus(task.id, "RUNNING");
  into.firstInitMs.push(firstActive.monoMs - mono0);
  into.firstRunningMs.push(firstRunning.monoMs - mono0);
  let completed = await client.waitForStatus(task.id, "COMPLETED");

  for (let i = 0; i < warmCount; i++) {
    const from = client.count(task.id);
    const timed = await user.followUp(task.id);
    if (timed.status !== "RUNNING") into.notWarm++;
    into.warmMs.push(timed.runningMs);
    into.warmPostMs.push(timed.postMs);
    completed = await client.waitForStatus(task.id, "COMPLETED", { from });
    into.floorMs.push(await floor.sample());
  }

  let from = client.count(task.id);
  if (s.mode === "remote") {
    const archived = await client.waitForStatus(task.id, "ARCHIVED", { from });
    const deadline = Date.parse(completed.event.scheduledCleanupAt!);
    into.cleanupLagMs.push(archived.wallMs - deadline);
  } else {
    await s.archive(task.id);
    await client.waitForStatus(task.id, "ARCHIVED", { from });
  }

  into.reinitFloorMs.push(worktreeFloorMs(repo));
  from = client.count(task.id);
  mono0 = performance.now();
  await s.followUp(task.id, "true");
  const active = await client.waitFor(task.id, (e) => e.initStatus === "ACTIVE", { from });
  const running = await client.waitForStatus(task.id, "RUNNING", { from });
  into.reinitMs.push(active.monoMs - mono0);
  into.coldMs.push(running.monoMs - mono0);
  await client.waitForStatus(task.id, "COMPLETED", { from });
  await s.deleteTask(task.id);
}

interface SeriesResult {
  mode: Mode;
  repo: "small" | "large";
  warm: Summary;
  warmPost: Summary;
  floor: Summary;
  cold: Summary;
  firstInit: Summary;
  firstRunning: Summary;
  reinit: Summary;
  reinitFloor: Summary;
  cleanupLag: Summary;
  notWarm: number;
}

async function runSeries(
  mode: Mode,
  name: "small" | "large",
  repo: BenchRepo,
  cycles: number,
  warmCount: number,
  log: (m: string) => void,
): Promise<SeriesResult> {
  const s = await startBenchServer(mode, { env: { TASK_CLEANUP_DELAY_MS: String(CLEANUP_DELAY_MS) } });
  const samples = emptySamples();
  let user: UserProcess | null = null;
  try {
    user = await UserProcess.start(s.t.url);
    const floor = await statusMoveFloor(s);
    // One unmeasured task fetches and indexes the repository, so every measured initialization finds the store warm.
    await runCycle(s, user, floor, repo, 1, emptySamples());
    for (let i = 0; i < cycles; i++) await runCycle(s, user, floor, repo, warmCount, samples);
    await floor.remove();
  } finally {
    await user?.close();
    await s.close();
  }
  const result: SeriesResult = {
    mode,
    repo: name,
    warm: summarize(samples.warmMs),
    warmPost: summarize(samples.warmPostMs),
    floor: summarize(samples.floorMs),
    cold: summarize(samples.coldMs),
    firstInit: summarize(samples.firstInitMs),
    firstRunning: summarize(samples.firstRunningMs),
    reinit: summarize(samples.reinitMs),
    reinitFloor: summarize(samples.reinitFloorMs),
    cleanupLag: summarize(samples.cleanupLagMs),
    notWarm: samples.notWarm,
  };
  log(
    `${mode} ${name}: warm ${formatSummary(result.warm)} (${overFloor(result)}); floor ${formatSummary(result.floor)}; cold ${formatSummary(result.cold)}; ` +
      `first init p50 ${formatMs(result.firstInit.p50)}, re-init p50 ${formatMs(result.reinit.p50)} (worktree floor ${formatMs(result.reinitFloor.p50)})`,
  );
  return result;
}

export const followUpSection: Section = {
  name: "follow-up",
  title: "Follow-up latency and re-initialization",
  async run({ quick, log }): Promise<SectionResult> {
    const small = createSmallRepo();
    const large = createLargeRepo();
    const series = [
      await runSeries("remote", "small", small, quick ? 3 : 10, quick ? 3 : 5, log),
      await runSeries("remote", "large", large, quick ? 1 : 3, quick ? 2 : 3, log),
      await runSeries("local", "small", small, quick ? 2 : 5, quick ? 3 : 5, log),
    ];
    const rows: Row[] = [];
    for (const x of series) {
      const label = `${x.mode}, ${x.repo === "small" ? "small repo" : "5,000 files"}`;
      const primary = x.mode === "remote" && x.repo === "small";
      rows.push({
        metric: `${label}: warm follow-up (POST → RUNNING)`,
        value: `${formatSummary(x.warm)} = ${overFloor(x)}`,
        ...(primary ? { target: "p50 ≤ 10 ms, p99 ≤ 20 ms", met: x.warm.p50 <= 10 && x.warm.p99 <= 20 } : {}),
      });
      rows.push({
        metric: `${label}: floor, one guarded status move + history row`,
        value: formatSummary(x.floor),
      });
      rows.push({ metric: `${label}: cold follow-up (POST → RUNNING)`, value: formatSummary(x.cold) });
      rows.push({
        metric: `${label}: cold / warm (p50)`,
        value: `${(x.cold.p50 / x.warm.p50).toFixed(0)}×`,
        ...(primary ? { target: "shown" } : {}),
      });
      rows.push({
        metric: `${label}: re-init vs first init (→ ACTIVE, p50)`,
        value: `${formatMs(x.reinit.p50)} vs ${formatMs(x.firstInit.p50)} (${(x.reinit.p50 / x.firstInit.p50).toFixed(2)}×)`,
      });
      const reinitTarget = x.mode === "remote" && x.repo === "large";
      rows.push({
        metric: `${label}: re-init after cleanup (→ ACTIVE) vs git worktree add of the same commit, same moment`,
        value: `p50 ${formatMs(x.reinit.p50)} = ${ratio(x.reinit.p50, x.reinitFloor.p50)}× floor (p50 ${formatMs(x.reinitFloor.p50)}, n=${x.reinitFloor.n})`,
        ...(reinitTarget
          ? {
              target: "≤ 1 s and ≤ 1.2× floor",
              met: x.reinit.p50 <= 1000 && x.reinit.p50 <= 1.2 * x.reinitFloor.p50,
            }
          : {}),
      });
    }
    return {
      rows,
      data: {
        cleanupDelayMs: CLEANUP_DELAY_MS,
        series: series.map((x) => ({
          mode: x.mode,
          repo: x.repo,
          warmFollowUpToRunningMs: rounded(x.warm),
          warmFollowUpPostAnsweredMs: rounded(x.warmPost),
          statusMoveFloorMs: rounded(x.floor),
          warmOverFloorP50: ratio(x.warm.p50, x.floor.p50),
          warmOverFloorP99: ratio(x.warm.p99, x.floor.p99),
          coldFollowUpToRunningMs: rounded(x.cold),
          coldOverWarmP50: Math.round((x.cold.p50 / x.warm.p50) * 10) / 10,
          firstInitToActiveMs: rounded(x.firstInit),
          firstInitToRunningMs: rounded(x.firstRunning),
          reinitToActiveMs: rounded(x.reinit),
          reinitFloorMs: rounded(x.reinitFloor),
          reinitOverFloorP50: ratio(x.reinit.p50, x.reinitFloor.p50),
          reinitOverFirstInitP50: Math.round((x.reinit.p50 / x.firstInit.p50) * 100) / 100,
          cleanupLagMs: rounded(x.cleanupLag),
          followUpsThatWereNotWarm: x.notWarm,
        })),
      },
    };
  },
};

function ratio(value: number, floor: number): number {
  return Math.round((value / floor) * 10) / 10;
}

/** The warm figures as multiples of the floor measured in the same run. */
function overFloor(x: SeriesResult): string {
  return `p50 ${ratio(x.warm.p50, x.floor.p50)}× · p99 ${ratio(x.warm.p99, x.floor.p99)}× floor`;
}
