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
 *
 * INDEX_REPOSITORY does not wait for the commit's index: each sample also
 * times when that index is complete, and the next sample starts only then,
 * so no sample pays for the one before. The floor of a first initialization
 * is `git clone` of a copy never seen (fetch and checkout), measured in the
 * same run before each cold series.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BenchRepo, coldCopy, createLargeRepo, createSmallRepo, settleDisk } from "../lib/repos";
import type { Row, Section, SectionResult } from "../lib/section";
import { activeAt, type BenchServer, type Mode, startBenchServer, stepDurations } from "../lib/server";
import { formatMs, rounded, type Summary, summarize } from "../lib/stats";

export interface ActiveSample {
  ms: number;
  /** From the POST until the commit's index was complete (built in the background after ACTIVE). */
  indexedMs: number;
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
  await s.t.server.indexer.settled();
  const indexedMs = performance.now() - mono0;
  const history = await s.history(task.id);
  if (remove) await s.deleteTask(task.id);
  const fromHistory = activeAt(history, wall0);
  if (!active && fromHistory === null) throw new Error(`task ${task.id}: no ACTIVE in its history`);
  return {
    taskId: task.id,
    ms: active ? active.monoMs - mono0 : fromHistory! - wall0,
    indexedMs,
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
  /** The first-initialization floor (git clone of a copy never seen), cold series only. */
  floor?: Summary;
}

/**
 * `git clone` of `count` copies never seen before: fetch and checkout, the
 * floor of a first initialization. The clones are removed by `removeClones`
 * once the mode's series are done: removing 5,000 files slows the next
 * checkouts on this disk, and no sample must pay for it.
 */
function cloneFloor(repo: BenchRepo, count: number): { floor: Summary; removeClones: () => void } {
  const times: number[] = [];
  const dirs: string[] = [];
  for (let i = 0; i < count; i++) {
    const source = coldCopy(repo).path;
    const target = mkdtempSync(join(tmpdir(), "umbra-bench-clone-"));
    dirs.push(source, target);
    settleDisk();
    const started = performance.now();
    execFileSync("git", ["clone", "--quiet", source, join(target, "clone")]);
    times.push(performance.now() - started);
  }
  settleDisk();
  return {
    floor: summarize(times),
    removeClones: () => {
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    },
  };
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
  const removals: Array<() => void> = [];
  const add = (repo: "small" | "large", store: Store, samples: ActiveSample[], floor?: Summary) => {
    const summary = summarize(samples.map((x) => x.ms));
    series.push({ mode, repo, store, summary, samples, floor });
    const indexed = summarize(samples.map((x) => x.indexedMs));
    const vsFloor = floor ? `, floor p50 ${formatMs(floor.p50)}` : "";
    log(
      `${mode} ${repo}, store ${store}: p50 ${formatMs(summary.p50)}, max ${formatMs(summary.max)}${vsFloor}; index complete p50 ${formatMs(indexed.p50)}`,
    );
  };
  try {
    for (const name of ["small", "large"] as const) {
      const repo = repos[name];
      const [coldCount, warmCount] = counts[name];
      const { floor, removeClones } = cloneFloor(repo, coldCount!);
      removals.push(removeClones);
      add(name, "cold", await measureMany(s, coldCount!, () => coldCopy(repo).path), floor);
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
    for (const remove of removals) remove();
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
      if (x.floor) row.value += ` · floor (git clone) p50 ${formatMs(x.floor.p50)}`;
      if (x.mode === "local" && x.repo === "large" && x.store === "warm") {
        row.target = "< 1 s";
        row.met = x.summary.p50 < 1000;
      }
      if (x.repo === "large" && x.store === "cold") {
        row.target = "≤ 2 s";
        row.met = x.summary.p50 <= 2000;
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
          indexCompleteMs: rounded(summarize(x.samples.map((s) => s.indexedMs))),
          floorMs: x.floor ? rounded(x.floor) : null,
          observedOnSocket: x.samples.filter((s) => s.observedOn === "socket").length,
          samplesMs: x.samples.map((s) => Math.round(s.ms * 10) / 10),
        })),
      },
    };
  },
};
