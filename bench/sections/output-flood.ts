/**
 * An agent that floods its output: a `shell` task runs
 * `head -c 200000000 /dev/urandom | base64` (270 MB of text in one command)
 * on the real server, started as a child process (`main.ts`) on the embedded
 * database or on Postgres. While the turn runs, this process asks
 * GET /api/health every 20 ms and reads the server's resident memory from
 * /proc (test/support/output-flood.ts: the probe lives outside the server,
 * so a blocked event loop shows as latency instead of delaying the probe).
 *
 * Target: health within 100 ms throughout, memory bounded, the turn ends.
 * A few floods per database, each on a fresh server, so one noisy moment of
 * the machine does not make the figure.
 *
 * On a busy machine a health request also waits for a core, so the server
 * carries a probe (test/support/loop-probe.mjs) that tells the two apart: for every
 * 10 ms tick of its event loop, the CPU time its main thread used. The
 * longest of those is the longest the server's own work held the loop.
 */

import { rmSync } from "node:fs";
import { createScratchPostgres, postgresAvailable, type ScratchPostgres } from "../../test/support/databases";
import { createRepo } from "../../test/support/git";
import { base64OutputBytes, floodTask, loopHolds, loopProbeEnv, loopProbeFile } from "../../test/support/output-flood";
import { killAllServers, spawnServer } from "../../test/support/server-process";
import { benchTempDir } from "../lib/repos";
import type { Row, Section, SectionResult } from "../lib/section";
import { formatMs, rounded, summarize } from "../lib/stats";

const VARIANTS = ["pglite", "postgres"] as const;
export const outputFloodSection: Section = {
  name: "output-flood",
  title: "An agent flooding its output (200 MB through base64)",
  variants: VARIANTS,
  async run({ quick, log, variant = "pglite" }): Promise<SectionResult> {
    const bytes = quick ? 50_000_000 : 200_000_000;
    const floods = quick ? 1 : 3;
    let scratch: ScratchPostgres | null = null;
    if (variant === "postgres") {
      if (!(await postgresAvailable())) {
        log("Postgres not reachable: skipped");
        return { rows: [{ metric: "Postgres", value: "skipped (no Postgres)" }], data: { skipped: true } };
      }
      scratch = await createScratchPostgres();
    }
    const runs: Awaited<ReturnType<typeof floodTask>>[] = [];
    const holds: number[] = [];
    try {
      for (let i = 0; i < floods; i++) {
        const dataDir = benchTempDir("umbra-bench-flood-");
        const probeFile = loopProbeFile(dataDir);
        const server = await spawnServer({
          dataDir,
          // A fresh embedded database takes a while to create on a busy machine.
          healthyTimeoutMs: 300_000,
          env: {
            LOG_LEVEL: "info",
            ...loopProbeEnv(probeFile),
            ...(scratch ? { DATABASE_URL: scratch.url } : {}),
          },
        });
        let run: Awaited<ReturnType<typeof floodTask>>;
        const repo = createRepo();
        try {
          run = await floodTask(server, repo, bytes);
        } finally {
          await server.stop();
          rmSync(repo, { recursive: true, force: true });
        }
        if (run.status !== "COMPLETED") throw new Error(`the flooding turn ended ${run.status}`);
        runs.push(run);
        const held = loopHolds(probeFile, run.startedAt, run.endedAt);
        holds.push(...held);
        const health = summarize(run.healthMs);
        log(
          `flood ${i + 1}/${floods}: turn ${formatMs(run.turnMs)}, health p50 ${formatMs(health.p50)} · p99 ${formatMs(health.p99)} · max ${formatMs(health.max)} (n=${health.n}); loop held at most ${formatMs(Math.max(...held))}; RSS ${run.rssBeforeMb.toFixed(0)} → max ${run.rssMaxMb.toFixed(0)} MB`,
        );
      }
    } finally {
      await killAllServers();
      await scratch?.drop();
    }
    const health = summarize(runs.flatMap((r) => r.healthMs));
    const held = summarize(holds);
    const worstPerRun = runs.map((r) => Math.max(...r.healthMs));
    const growth = summarize(runs.map((r) => r.rssMaxMb - r.rssBeforeMb));
    const turns = summarize(runs.map((r) => r.turnMs));
    const label = variant === "postgres" ? "Postgres" : "PGlite";
    const rows: Row[] = [
      {
        metric: `${label}: /api/health during the flood, max (p99, p50; ${health.n} probes, ${runs.length} floods)`,
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
        metric: `${label}: server RSS growth during the flood (max of ${runs.length})`,
        value: `${growth.max.toFixed(0)} MB (from ${runs[0]!.rssBeforeMb.toFixed(0)} MB)`,
        target: "bounded",
        met: growth.max < 200,
      },
      { metric: `${label}: turn duration (p50)`, value: formatMs(turns.p50), target: "ends", met: true },
    ];
    return {
      rows,
      data: {
        method:
          "server as a child process (main.ts, LOG_LEVEL=info), shell agent in local mode; the task runs " +
          `head -c ${bytes} /dev/urandom | base64 (${base64OutputBytes(bytes)} bytes of output); GET /api/health every 20 ms ` +
          "from the benchmark process while the turn runs; RSS from /proc/<pid>/status; the server's main-thread CPU per " +
          "10 ms event-loop tick from a preloaded probe (test/support/loop-probe.mjs)",
        outputBytes: base64OutputBytes(bytes),
        healthMs: rounded(health),
        loopHeldMs: rounded(held),
        worstHealthPerFloodMs: worstPerRun.map((ms) => Math.round(ms)),
        rssGrowthMb: rounded(growth),
        rssBeforeMb: runs.map((r) => Math.round(r.rssBeforeMb)),
        turnMs: rounded(turns),
      },
    };
  },
};
