/**
 * The server's memory and responsiveness while it saves a 1 GiB file of
 * random bytes (which no compression shrinks): a turn writes the file, the
 * save commits it and (in remote mode) streams it from the sandbox into the
 * repository store. Git runs in child processes, and in remote mode the spawn
 * host pipes the sidecar's pack straight into `git index-pack` (it never
 * enters the server), so the server's RSS should not follow the file's size,
 * and its event loop should stay free.
 *
 * The server runs as a child process (`main.ts`, as `npm start` runs it) and
 * is measured from this one, as output-flood does: a probe inside the
 * server's own process would be delayed by a blocked loop and hide it, and
 * this process's own work (a client, a sampler) would count against the
 * server. The server carries the loop probe (test/support/loop-probe.mjs),
 * which tells the server's own pauses from waits for a core: while the turn
 * writes 1 GiB from /dev/urandom and git packs and indexes it, both cores of
 * this machine are busy.
 *
 * Figures: the server's RSS (from /proc) — after the first task, peak while
 * the turn and its save run, and after; GET /api/health every 20 ms
 * throughout (target: within 100 ms); the longest the server's main thread
 * held its loop. Each mode runs on a fresh server, on the embedded database
 * and on Postgres (skipped without one). --quick uses a quarter of the file.
 */
import { createScratchPostgres, postgresAvailable, type ScratchPostgres } from "../../test/support/databases";
import { waitForTaskStatus } from "../../test/support/faults";
import { loopHolds, loopProbeEnv, loopProbeFile, measureTurn } from "../../test/support/output-flood";
import { killAllServers, killProcessesUnder, spawnServer } from "../../test/support/server-process";
import { benchTempDir, createSmallRepo, settleDisk } from "../lib/repos";
import type { Section, SectionResult } from "../lib/section";
import { formatBytes, formatMs, summarize } from "../lib/stats";

const FILE_BYTES = 1024 * 1024 * 1024;
const MIB = 1024 * 1024;

export const saveMemorySection: Section = {
  name: "save-memory",
  title: "Server memory and health while saving a 1 GiB random file",
  variants: ["remote", "local", "remote-postgres", "local-postgres"],
  // The same bounds with the database in another process: 3.5 minutes that change no figure of the table.
  onRequest: ["remote-postgres", "local-postgres"],
  async run({ quick, log, variant = "remote" }): Promise<SectionResult> {
    const mode = variant.startsWith("local") ? "local" : "remote";
    const onPostgres = variant.endsWith("-postgres");
    const label = onPostgres ? `${mode} on Postgres` : mode;
    let scratch: ScratchPostgres | null = null;
    if (onPostgres) {
      if (!(await postgresAvailable())) {
        log("Postgres not reachable: skipped");
        return { rows: [{ metric: `${variant}: Postgres`, value: "skipped (no Postgres)" }], data: { skipped: true } };
      }
      scratch = await createScratchPostgres();
    }
    const bytes = quick ? FILE_BYTES / 4 : FILE_BYTES;
    const repo = createSmallRepo();
    const dataDir = benchTempDir("save");
    const probeFile = loopProbeFile(dataDir);
    const server = await spawnServer({
      dataDir,
      healthyTimeoutMs: 300_000,
      env: {
        AGENT_MODE: mode,
        VM_READY_TIMEOUT_MS: "60000",
        LOG_LEVEL: "info",
        ...loopProbeEnv(probeFile),
        ...(scratch ? { DATABASE_URL: scratch.url } : {}),
      },
    });
    try {
      const first = await server.api<{ task: { id: string } }>("POST", "/api/tasks", {
        repoUrl: repo.path,
        message: "true",
      });
      if (first.status !== 201) throw new Error(`POST /api/tasks answered ${first.status}: ${first.text}`);
      const taskId = first.body.task.id;
      await waitForTaskStatus(server, taskId, "COMPLETED", 300_000);
      settleDisk();
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const run = await measureTurn(
        server,
        async () => {
          const message = `head -c ${bytes} /dev/urandom > random.bin`;
          const sent = await server.api("POST", `/api/tasks/${taskId}/messages`, { message });
          if (sent.status !== 202) throw new Error(`the follow-up answered ${sent.status}: ${sent.text}`);
          return taskId;
        },
        { timeoutMs: 30 * 60_000 },
      );
      if (run.status !== "COMPLETED") throw new Error(`the turn ended ${run.status}`);
      const save = savedLines(server.output()).at(-1);
      const deleted = await server.api("DELETE", `/api/tasks/${taskId}`);
      if (deleted.status !== 204) throw new Error(`DELETE answered ${deleted.status}: ${deleted.text}`);
      // A graceful stop waits for the turn's delivery push (the 1 GiB commit, to the origin), and
      // the loop probe writes its samples only when the process exits on its own.
      await server.stop(300_000);
      const held = summarize(loopHolds(probeFile, run.startedAt, run.endedAt));
      const health = summarize(run.healthMs);
      const growth = (run.rssMaxMb - run.rssBeforeMb) * MIB;
      log(
        `${label}: ${formatBytes(bytes)} file, turn ${formatMs(run.turnMs)}, save ${formatMs(save?.ms ?? Number.NaN)}, ` +
          `RSS ${run.rssBeforeMb.toFixed(0)} MiB, peak +${formatBytes(growth)}, after ${run.rssAfterMb.toFixed(0)} MiB, ` +
          `health max ${formatMs(health.max)} (p99 ${formatMs(health.p99)}, n=${health.n}), loop held at most ${formatMs(held.max)}`,
      );
      return {
        rows: [
          {
            metric: `${label}: server RSS growth while saving a ${formatBytes(bytes)} random file (peak over before)`,
            value: `+${formatBytes(growth)} (before ${run.rssBeforeMb.toFixed(0)} MiB; after ${run.rssAfterMb.toFixed(0)} MiB)`,
            target: "< 100 MiB",
            met: growth < 100 * MIB,
          },
          {
            metric: `${label}: /api/health during the turn and its save, max (p99, p50; ${health.n} probes)`,
            value: `${formatMs(health.max)} (${formatMs(health.p99)}, ${formatMs(health.p50)})`,
            target: "< 100 ms",
            met: health.max < 100,
          },
          {
            metric: `${label}: event loop held by the server's own work, longest (p99; main-thread CPU per 10 ms tick)`,
            value: `${formatMs(held.max)} (${formatMs(held.p99)})`,
            target: "< 100 ms",
            met: held.max < 100,
          },
          {
            metric: `${label}: turn with the save (RUNNING → COMPLETED) / the save alone`,
            value:
              `${formatMs(run.turnMs)} / ${formatMs(save?.ms ?? Number.NaN)}` +
              (mode === "remote" ? `, ${formatBytes(save?.bytes ?? Number.NaN)} sent` : ""),
          },
        ],
        data: {
          mode,
          fileBytes: bytes,
          rssBeforeMb: run.rssBeforeMb,
          rssMaxMb: run.rssMaxMb,
          rssAfterMb: run.rssAfterMb,
          turnMs: Math.round(run.turnMs),
          healthMs: { max: health.max, p99: health.p99, p50: health.p50, n: health.n },
          loopHeldMs: { max: held.max, p99: held.p99 },
          save: save ?? null,
        },
      };
    } finally {
      await killAllServers();
      killProcessesUnder(dataDir);
      await scratch?.drop();
    }
  },
};

/** The server's "workspace.saved" log lines (JSON), in order. */
function savedLines(output: string): { objects?: number; bytes?: number; ms?: number }[] {
  return output
    .split("\n")
    .filter((line) => line.includes('"workspace.saved"'))
    .map((line) => JSON.parse(line));
}
