/**
 * The server's own memory: the real server as a child process
 * (test/support/server-process.ts), run as `npm start` runs it — the bundle
 * scripts/build-server.mjs writes, under plain `node` — with AGENT_MODE=local
 * and the `shell` agent, on the embedded PGlite database or on Postgres (the
 * variants).
 *
 * Readings, from /proc/<pid> of the server: right after GET /api/health first
 * answers (idle), right after 5 tasks running `true` have completed one after
 * another, and again after a settling pause (timers, lazy loads and the
 * garbage collector have then had their turn). The peak is the kernel's
 * high-water mark (VmHWM) over the whole run. Postgres is the floor: the same
 * server and tasks with the database in another process. The `pglite` variant
 * measures that floor too, right after its own server, so its ratio compares
 * two readings of one run; the `postgres` variant reports the floor alone.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createScratchPostgres, postgresAvailable } from "../../test/support/databases";
import { createTask, DataDirs, waitForTaskStatus } from "../../test/support/faults";
import { spawnServer } from "../../test/support/server-process";
import { type ProcessMemory, processMemory } from "../lib/memory";
import { createSmallRepo } from "../lib/repos";
import type { Row, Section, SectionResult } from "../lib/section";
import { formatBytes } from "../lib/stats";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const VARIANTS = ["pglite", "postgres"] as const;
type Variant = (typeof VARIANTS)[number];
const TASKS = 5;
/** The target for the embedded database after the 5 tasks, in MB (10^6 bytes). */
const TARGET_BYTES = 200 * 1000 * 1000;

interface Readings {
  idle: ProcessMemory;
  afterTasks: ProcessMemory;
  settled: ProcessMemory;
  settleMs: number;
}

async function measure(variant: Variant, settleMs: number, log: (m: string) => void): Promise<Readings> {
  const dataDirs = new DataDirs();
  const scratch = variant === "postgres" ? await createScratchPostgres() : undefined;
  try {
    const env: Record<string, string> = { AGENT_MODE: "local", LOG_LEVEL: "warn" };
    if (scratch) env.DATABASE_URL = scratch.url;
    const server = await spawnServer({ dataDir: dataDirs.create("server-memory"), env, bundled: true });
    const idle = processMemory(server.pid);
    log(`${variant}: idle ${formatBytes(idle.rssBytes)}`);
    const repo = createSmallRepo();
    for (let i = 0; i < TASKS; i++) {
      const task = await createTask(server, repo.path, "true");
      await waitForTaskStatus(server, task.id, "COMPLETED");
    }
    const afterTasks = processMemory(server.pid);
    log(`${variant}: after ${TASKS} tasks ${formatBytes(afterTasks.rssBytes)}; settling ${settleMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    const settled = processMemory(server.pid);
    const exit = await server.stop();
    if (exit !== 0) throw new Error(`server exited with ${exit}:\n${server.output().slice(-3000)}`);
    return { idle, afterTasks, settled, settleMs };
  } finally {
    await dataDirs.cleanUp();
    await scratch?.drop();
  }
}

function describe(memory: ProcessMemory): string {
  return `${formatBytes(memory.rssBytes)} (anonymous ${formatBytes(memory.anonymousBytes)}, files ${formatBytes(memory.fileBytes)})`;
}

/** MB as the targets are written (10^6 bytes), next to the MiB the other figures use. */
function megabytes(bytes: number): string {
  return `${Math.round(bytes / 1e6)} MB`;
}

export const serverMemorySection: Section = {
  name: "server-memory",
  title: "The server's memory, embedded database and Postgres",
  variants: VARIANTS,
  async run({ quick, log, variant = "pglite" }): Promise<SectionResult> {
    const mode: Variant = variant === "postgres" ? "postgres" : "pglite";
    if (mode === "postgres" && !(await postgresAvailable())) {
      throw new Error("needs Postgres (TEST_DATABASE_URL or the local default)");
    }
    execFileSync(process.execPath, ["scripts/build-server.mjs"], { cwd: REPO_ROOT, stdio: "inherit" });
    const settleMs = quick ? 3000 : 10_000;
    const r = await measure(mode, settleMs, log);
    const worst = Math.max(r.afterTasks.rssBytes, r.settled.rssBytes);
    const floor =
      mode === "pglite" && (await postgresAvailable()) ? await measure("postgres", settleMs, log) : undefined;
    const floorWorst = floor ? Math.max(floor.afterTasks.rssBytes, floor.settled.rssBytes) : 0;
    const ratio = (x: number, y: number) => `${Math.round((x / y) * 100) / 100}×`;
    const rows: Row[] = [
      { metric: `${mode}: RSS idle after start`, value: describe(r.idle) },
      {
        metric: `${mode}: RSS after ${TASKS} local tasks (max of at once and ${r.settleMs / 1000} s later)`,
        value: `${megabytes(worst)} = ${describe(r.settled)} settled`,
        ...(mode === "pglite" ? { target: `≤ ${megabytes(TARGET_BYTES)}`, met: worst <= TARGET_BYTES } : {}),
      },
      { metric: `${mode}: peak RSS (VmHWM)`, value: formatBytes(r.settled.peakRssBytes) },
    ];
    if (floor) {
      rows.push({
        metric: "pglite / postgres floor (same run): idle · after the tasks",
        value: `${ratio(r.idle.rssBytes, floor.idle.rssBytes)} (floor ${formatBytes(floor.idle.rssBytes)}) · ${ratio(worst, floorWorst)} (floor ${formatBytes(floorWorst)})`,
      });
    }
    return {
      rows,
      data: {
        database: mode,
        tasks: TASKS,
        targetBytes: mode === "pglite" ? TARGET_BYTES : undefined,
        idle: r.idle,
        afterTasks: r.afterTasks,
        settled: r.settled,
        settleMs: r.settleMs,
        postgresFloor: floor,
      },
    };
  },
};
