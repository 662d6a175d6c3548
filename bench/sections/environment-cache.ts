/**
 * Re-initialization with a cached environment: a Node project whose
 * environment's setup is `npm ci` of a few hundred packages (bench/lib/
 * npm-project.ts), local and remote (`process` provider).
 *
 * - Cold: a task on a repository the environment cache has never seen (a
 *   fresh copy at a new path); INSTALL_DEPENDENCIES runs `npm ci` with an
 *   empty npm cache, downloading every tarball from the registry on
 *   127.0.0.1, then stores node_modules in the environment cache.
 *   Figure: POST /api/tasks → initStatus ACTIVE.
 * - Warm re-initialization: the same task archived (workspace destroyed),
 *   then a follow-up: the workspace is made again and node_modules restored
 *   from the cache instead of running `npm ci`. Figure: POST of the
 *   follow-up → ACTIVE, the goal being ≤ 2 s.
 * - Warm new task: another task on the same repository, also restored.
 * - Floor: the same re-initialization of a copy of the project with no
 *   environment (INSTALL_DEPENDENCIES has nothing to do), its samples taken
 *   alternately with the warm ones on the same server, so both see the same
 *   machine. The warm figure is reported as a ratio to this floor: what
 *   restoring node_modules adds to re-initializing the bare repository.
 *
 * Each warm sample is checked to be a cache hit (the cache's own counter),
 * so a silent fallback to `npm ci` cannot pass for a fast restore, and each
 * floor sample to have touched the cache not at all.
 */
import { cpSync } from "node:fs";
import type { TaskDto } from "@repo/types";
import { type NpmProject, prepareNpmProject } from "../lib/npm-project";
import { benchTempDir, settleDisk } from "../lib/repos";
import type { Row, Section, SectionResult } from "../lib/section";
import { type BenchServer, type Mode, startBenchServer, stepDurations } from "../lib/server";
import { formatBytes, formatMs, rounded, type Summary, summarize } from "../lib/stats";

const TARGET_MS = 2000;
/** A cold `npm ci` of a few hundred packages on a loaded machine may take minutes. */
const COLD_TIMEOUT_MS = 15 * 60_000;

interface Sample {
  ms: number;
  installMs: number;
  steps: Record<string, number>;
}

/** Starts work (a new task or a follow-up) and times POST → ACTIVE; waits for the turn to end. */
async function timeToActive(
  s: BenchServer,
  taskId: string | null,
  start: () => Promise<TaskDto>,
): Promise<Sample & { taskId: string }> {
  settleDisk();
  const wall0 = Date.now();
  const from = taskId ? s.client.count(taskId) : 0;
  const mono0 = performance.now();
  const task = await start();
  if (!taskId) await s.client.join(task.id);
  const active = await s.client.waitFor(task.id, (e) => e.initStatus === "ACTIVE", {
    from,
    timeoutMs: COLD_TIMEOUT_MS,
  });
  await s.client.waitForStatus(task.id, "COMPLETED", { from });
  const steps = stepDurations(await s.history(task.id), wall0);
  return { taskId: task.id, ms: active.monoMs - mono0, installMs: steps.INSTALL_DEPENDENCIES ?? Number.NaN, steps };
}

interface ModeResult {
  mode: Mode;
  cold: Sample[];
  /** Re-initialization of the project with no environment, alternating with `reinit`. */
  floor: Sample[];
  reinit: Sample[];
  newTask: Sample[];
  cacheBytes: number;
}

async function runMode(mode: Mode, project: NpmProject, quick: boolean, log: (m: string) => void): Promise<ModeResult> {
  const counts = quick ? { cold: 1, reinit: 3, newTask: 1 } : { cold: 2, reinit: 5, newTask: 3 };
  const s = await startBenchServer(mode, { env: { ENVIRONMENT_CACHE_MAX_MB: "4096" } });
  const environment = (repoUrl: string) =>
    s.t.api("PUT", "/api/environments", {
      repoUrl,
      setupScript: "npm ci --no-audit --no-fund",
      env: { npm_config_registry: project.registryUrl, npm_config_update_notifier: "false" },
      // The registry is on host loopback: a sandbox reaches it only when its environment names it.
      allowedDomains: [new URL(project.registryUrl).host],
    });
  const cache = s.t.server.environmentCache!;
  try {
    const cold: (Sample & { taskId: string })[] = [];
    for (let i = 0; i < counts.cold; i++) {
      // A new path: a repository the environment cache (keyed by repository) has never seen.
      const copy = benchTempDir("npm-copy");
      cpSync(project.path, copy, { recursive: true });
      await environment(copy);
      cold.push(await timeToActive(s, null, () => s.createTask(copy, "true")));
      log(`${mode} cold: → ACTIVE ${formatMs(cold.at(-1)!.ms)} (npm ci ${formatMs(cold.at(-1)!.installMs)})`);
    }
    const task = cold.at(-1)!.taskId;
    // The floor's task: the same files at a path with no environment, set up once (not counted).
    const bare = benchTempDir("npm-bare");
    cpSync(project.path, bare, { recursive: true });
    const floorTask = (await timeToActive(s, null, () => s.createTask(bare, "true"))).taskId;
    const hitsBefore = cache.counters.hits;
    const reinit: Sample[] = [];
    const floor: Sample[] = [];
    for (let i = 0; i < counts.reinit; i++) {
      const before = { ...cache.counters };
      await s.archive(floorTask);
      floor.push(await timeToActive(s, floorTask, () => s.followUp(floorTask, "true")));
      if (cache.counters.hits !== before.hits || cache.counters.misses !== before.misses) {
        throw new Error(`${mode}: the floor's re-initialization used the environment cache`);
      }
      await s.archive(task);
      reinit.push(await timeToActive(s, task, () => s.followUp(task, "true")));
    }
    const repoUrl = (await s.t.api<{ task: TaskDto }>("GET", `/api/tasks/${task}`)).body.task.repoUrl;
    const newTask: Sample[] = [];
    for (let i = 0; i < counts.newTask; i++)
      newTask.push(await timeToActive(s, null, () => s.createTask(repoUrl, "true")));
    const hits = cache.counters.hits - hitsBefore;
    // Every warm initialization (re-initializations and new tasks) must have been a hit.
    if (hits !== reinit.length + newTask.length) {
      throw new Error(`${mode}: ${hits} cache hits for ${reinit.length + newTask.length} warm initializations`);
    }
    const p50 = (samples: Sample[]) => summarize(samples.map((x) => x.ms)).p50;
    log(`${mode} warm re-init: p50 ${formatMs(p50(reinit))}; floor (no environment) p50 ${formatMs(p50(floor))}`);
    return { mode, cold, floor, reinit, newTask, cacheBytes: cache.bytes };
  } finally {
    await s.close();
  }
}

/** "3.1× " — a p50 as a multiple of another. */
const ratio = (value: number, floor: number): string => `${(value / floor).toFixed(1)}×`;

const ms = (samples: Sample[], pick: (s: Sample) => number = (s) => s.ms): Summary => summarize(samples.map(pick));

export const environmentCacheSection: Section = {
  name: "environment-cache",
  title: "Re-initialization with a cached environment (npm ci)",
  async run({ quick, log }): Promise<SectionResult> {
    const project = await prepareNpmProject(log);
    log(`project: ${project.packages} packages (${project.source})`);
    let results: ModeResult[];
    try {
      results = [await runMode("local", project, quick, log), await runMode("remote", project, quick, log)];
    } finally {
      await project.close();
    }
    const rows: Row[] = [];
    for (const r of results) {
      const reinit = ms(r.reinit);
      const floor = ms(r.floor);
      rows.push({
        metric: `${r.mode}: re-initialization, environment cache warm (POST → ACTIVE)`,
        value: `p50 ${formatMs(reinit.p50)} · max ${formatMs(reinit.max)} (n=${reinit.n}); ${ratio(reinit.p50, floor.p50)} the floor`,
        target: "≤ 2 s",
        met: reinit.p50 <= TARGET_MS,
      });
      rows.push({
        metric: `${r.mode}: floor, re-initialization with no environment (same run, alternating)`,
        value: `p50 ${formatMs(floor.p50)} · max ${formatMs(floor.max)} (n=${floor.n}); restore adds ${formatMs(reinit.p50 - floor.p50)}`,
      });
      rows.push({
        metric: `${r.mode}: first initialization, setup cold (npm ci of ${project.packages} packages)`,
        value: `p50 ${formatMs(ms(r.cold).p50)} (n=${r.cold.length}), ${ratio(ms(r.cold).p50, floor.p50)} the floor; npm ci alone ${formatMs(ms(r.cold, (s) => s.installMs).p50)}`,
      });
      rows.push({
        metric: `${r.mode}: INSTALL_DEPENDENCIES, restore vs npm ci (p50)`,
        value: `${formatMs(ms(r.reinit, (s) => s.installMs).p50)} vs ${formatMs(ms(r.cold, (s) => s.installMs).p50)} (cache ${formatBytes(r.cacheBytes)})`,
      });
      rows.push({
        metric: `${r.mode}: new task on the same repository, cache warm (POST → ACTIVE)`,
        value: `p50 ${formatMs(ms(r.newTask).p50)} (n=${r.newTask.length})`,
      });
    }
    return {
      rows,
      data: {
        project: { packages: project.packages, source: project.source },
        modes: results.map((r) => ({
          mode: r.mode,
          cacheBytes: r.cacheBytes,
          coldToActiveMs: rounded(ms(r.cold)),
          coldInstallMs: rounded(ms(r.cold, (s) => s.installMs)),
          floorToActiveMs: rounded(ms(r.floor)),
          reinitOverFloor: Math.round((ms(r.reinit).p50 / ms(r.floor).p50) * 100) / 100,
          coldOverFloor: Math.round((ms(r.cold).p50 / ms(r.floor).p50) * 100) / 100,
          reinitToActiveMs: rounded(ms(r.reinit)),
          reinitRestoreMs: rounded(ms(r.reinit, (s) => s.installMs)),
          newTaskToActiveMs: rounded(ms(r.newTask)),
          samples: {
            cold: r.cold.map((s) => s.steps),
            floor: r.floor.map((s) => ({ ms: Math.round(s.ms), ...s.steps })),
            reinit: r.reinit.map((s) => ({ ms: Math.round(s.ms), ...s.steps })),
          },
        })),
      },
    };
  },
};
