/**
 * Time to ACTIVE: from the POST that creates a task to the
 * `task-status-update` with initStatus ACTIVE on a socket, for a small and a
 * 5,000-file repository, local and remote (`process` provider), first time
 * (a repository the server has never fetched or indexed) and with the
 * repository store warm (the same repository again: fetch is a no-op, the
 * commit is already indexed).
 *
 * The client joins the task's room right after the POST answers; if ACTIVE
 * came before the join, the status-history row of ACTIVE (same host clock)
 * stands in and the sample is counted as such. Each task runs `true` with
 * the shell agent. The tasks of a series keep their workspaces (local mode
 * never cleans up; remote ones would stay warm for 10 minutes) and are
 * deleted together after it; dirty pages are written out before each sample
 * (settleDisk). One more local series deletes each task as soon as it is
 * done, to show what removing a 5,000-file workspace costs the next one.
 */
import { type BenchRepo, coldCopy, createLargeRepo, createSmallRepo, settleDisk } from "../lib/repos";
import type { Row, Section, SectionResult } from "../lib/section";
import { activeAt, type BenchServer, type Mode, startBenchServer, stepDurations } from "../lib/server";
import { formatMs, rounded, type Summary, summarize } from "../lib/stats";

export interface ActiveSample {
  ms: number;
  observedOn: "socket" | "history";
  steps: Record<string, number>;
}

/**
 * Creates a task on `repoUrl`, measures POST → ACTIVE and waits for its
 * turn. The task (and its workspace) stays unless `remove`.
 */
export async function measureTimeToActive(
  s: BenchServer,
  repoUrl: string,
  remove = false,
): Promise<ActiveSample & { taskId: string }> {
  settleDisk();
  const wall0 = Date.now();
  const mono0 = performance.now();
  const task = await s.createTask(repoUrl, "true");
  const ack = await s.client.join(task.id);
  const missed = ack.ok && ack.task.initStatus === "ACTIVE";
  const active = missed ? null : await s.client.waitFor(task.id, (e) => e.initStatus === "ACTIVE");
  await s.client.waitForStatus(task.id, "COMPLETED");
  const history = await s.history(task.id);
  if (remove) await s.deleteTask(task.id);
  const fromHistory = activeAt(history, wall0);
  if (!active && fromHistory === null) throw new Error(`task ${task.id}: no ACTIVE in its history`);
  return {
    taskId: task.id,
    ms: active ? active.monoMs - mono0 : fromHistory! - wall0,
    observedOn: active ? "socket" : "history",
    steps: stepDurations(history, wall0),
  };
}

type Store = "cold" | "warm" | "warm, right after a workspace was deleted";

interface Series {
  mode: Mode;
  repo: "small" | "large";
  store: Store;
  summary: Summary;
  samples: ActiveSample[];
}

function medianSteps(samples: ActiveSample[]): Record<string, number> {
  const names = [...new Set(samples.flatMap((s) => Object.keys(s.steps)))];
  return Object.fromEntries(names.map((name) => [name, summarize(samples.map((s) => s.steps[name] ?? 0)).p50]));
}

/** Measures `count` tasks, keeping their workspaces meanwhile, then deletes them all. */
async function measureMany(s: BenchServer, count: number, repoUrl: () => string): Promise<ActiveSample[]> {
  const samples: (ActiveSample & { taskId: string })[] = [];
  for (let i = 0; i < count; i++) samples.push(await measureTimeToActive(s, repoUrl()));
  for (const sample of samples) await s.deleteTask(sample.taskId);
  settleDisk();
  await new Promise((resolve) => setTimeout(resolve, 1000)); // let the deletes' discards finish
  return samples;
}

async function runMode(
  mode: Mode,
  repos: Record<"small" | "large", BenchRepo>,
  quick: boolean,
  log: (m: string) => void,
) {
  const counts = quick ? { small: [2, 3], large: [1, 2] } : { small: [5, 10], large: [3, 5] };
  const s = await startBenchServer(mode);
  const series: Series[] = [];
  const add = (repo: "small" | "large", store: Store, samples: ActiveSample[]) => {
    const summary = summarize(samples.map((x) => x.ms));
    series.push({ mode, repo, store, summary, samples });
    log(`${mode} ${repo}, store ${store}: p50 ${formatMs(summary.p50)}, max ${formatMs(summary.max)}`);
  };
  try {
    for (const name of ["small", "large"] as const) {
      const repo = repos[name];
      const [coldCount, warmCount] = counts[name];
      add(name, "cold", await measureMany(s, coldCount!, () => coldCopy(repo).path));
      await measureMany(s, 1, () => repo.path); // fetches and indexes this path once
      add(name, "warm", await measureMany(s, warmCount!, () => repo.path));
      if (mode === "local" && name === "large") {
        // Each task deleted as soon as it is done, so every sample follows the removal of 5,000 files.
        const afterDelete: ActiveSample[] = [];
        for (let i = 0; i < warmCount!; i++) afterDelete.push(await measureTimeToActive(s, repo.path, true));
        add(name, "warm, right after a workspace was deleted", afterDelete);
      }
    }
  } finally {
    await s.close();
  }
  return series;
}

export const timeToActiveSection: Section = {
  name: "time-to-active",
  title: "Time to ACTIVE",
  async run({ quick, log }): Promise<SectionResult> {
    const repos = { small: createSmallRepo(), large: createLargeRepo() };
    const series = [...(await runMode("local", repos, quick, log)), ...(await runMode("remote", repos, quick, log))];
    const rows: Row[] = series.map((x) => {
      const row: Row = {
        metric: `${x.mode}, ${x.repo === "small" ? "small repo" : "5,000 files"}, store ${x.store}`,
        value: `p50 ${formatMs(x.summary.p50)} · max ${formatMs(x.summary.max)} (n=${x.summary.n})`,
      };
      if (x.mode === "local" && x.repo === "large" && x.store === "warm") {
        row.target = "< 1 s";
        row.met = x.summary.p50 < 1000;
      }
      return row;
    });
    return {
      rows,
      data: {
        repositories: Object.fromEntries(
          Object.entries(repos).map(([k, r]) => [k, { files: r.files, bytes: r.bytes }]),
        ),
        series: series.map((x) => ({
          mode: x.mode,
          repo: x.repo,
          store: x.store,
          ms: rounded(x.summary),
          medianStepMs: medianSteps(x.samples),
          observedOnSocket: x.samples.filter((s) => s.observedOn === "socket").length,
          samplesMs: x.samples.map((s) => Math.round(s.ms * 10) / 10),
        })),
      },
    };
  },
};
