/**
 * The server's memory and responsiveness while it saves a 1 GiB file of
 * random bytes (which no compression shrinks): a turn writes the file, the
 * save commits it and (in remote mode) streams it from the sandbox into the
 * repository store. Git runs in child processes and the pack goes from the
 * HTTP body straight into `git index-pack`, so this process's RSS should not
 * follow the file's size, and its event loop should stay free.
 *
 * Figures: this process's (the server's) RSS — baseline after a collection,
 * peak while the turn and its save run (sampled every 20 ms, and the
 * kernel's high-water mark), and after, once collected again; GET
 * /api/health every 20 ms throughout (target: within 100 ms). Each mode runs
 * in a fresh process. --quick uses a quarter of the file.
 */
import { peakRss, RssSampler, resetPeakRss } from "../lib/memory";
import { createSmallRepo, settleDisk } from "../lib/repos";
import type { Section, SectionResult } from "../lib/section";
import { type Mode, startBenchServer } from "../lib/server";
import { formatBytes, formatMs, summarize } from "../lib/stats";

const FILE_BYTES = 1024 * 1024 * 1024;
const MIB = 1024 * 1024;

/** GET /api/health every `intervalMs` until stopped; the answer times in ms. */
function probeHealth(url: string, intervalMs = 20): { stop(): Promise<number[]> } {
  const times: number[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const started = performance.now();
      const response = await fetch(`${url}/api/health`);
      await response.arrayBuffer();
      times.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return times;
    },
  };
}

async function settleMemory(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.();
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
  return process.memoryUsage.rss();
}

export const saveMemorySection: Section = {
  name: "save-memory",
  title: "Server memory and health while saving a 1 GiB random file",
  variants: ["remote", "local"],
  async run({ quick, log, variant = "remote" }): Promise<SectionResult> {
    const mode = variant as Mode;
    const bytes = quick ? FILE_BYTES / 4 : FILE_BYTES;
    const repo = createSmallRepo();
    const saved: { objects?: number; bytes?: number; ms?: number }[] = [];
    const s = await startBenchServer(mode, {
      onLog: (line) => {
        if (line.includes('"workspace.saved"')) saved.push(JSON.parse(line));
      },
    });
    try {
      const task = await s.createTask(repo.path, "true");
      await s.client.join(task.id);
      await s.client.waitForStatus(task.id, "COMPLETED");
      settleDisk();
      const baseline = await settleMemory();
      const hwmReset = resetPeakRss();
      const sampler = new RssSampler(20);
      const health = probeHealth(s.t.url);
      const from = s.client.count(task.id);
      const started = performance.now();
      await s.followUp(task.id, `head -c ${bytes} /dev/urandom > random.bin`);
      const ended = await s.client.waitForStatus(task.id, "COMPLETED", { from, timeoutMs: 30 * 60_000 });
      const turnMs = ended.monoMs - started;
      const sampled = sampler.stop();
      const healthMs = summarize(await health.stop());
      const peak = Math.max(sampled.peakBytes, hwmReset ? peakRss() : 0);
      const after = await settleMemory();
      const save = saved.at(-1);
      await s.deleteTask(task.id);
      const growth = peak - baseline;
      log(
        `${mode}: ${formatBytes(bytes)} file, turn ${formatMs(turnMs)}, save ${formatMs(save?.ms ?? Number.NaN)}, ` +
          `RSS baseline ${formatBytes(baseline)}, peak +${formatBytes(growth)}, after +${formatBytes(after - baseline)}, ` +
          `health max ${formatMs(healthMs.max)} (p99 ${formatMs(healthMs.p99)}, n=${healthMs.n})`,
      );
      return {
        rows: [
          {
            metric: `${mode}: server RSS growth while saving a ${formatBytes(bytes)} random file (peak over baseline)`,
            value: `+${formatBytes(growth)} (baseline ${formatBytes(baseline)}; after +${formatBytes(after - baseline)})`,
            target: "< 100 MiB",
            met: growth < 100 * MIB,
          },
          {
            metric: `${mode}: /api/health during the turn and its save, max (p99, p50; ${healthMs.n} probes)`,
            value: `${formatMs(healthMs.max)} (${formatMs(healthMs.p99)}, ${formatMs(healthMs.p50)})`,
            target: "< 100 ms",
            met: healthMs.max < 100,
          },
          {
            metric: `${mode}: turn with the save (POST → COMPLETED) / the save alone`,
            value:
              `${formatMs(turnMs)} / ${formatMs(save?.ms ?? Number.NaN)}` +
              (mode === "remote" ? `, ${formatBytes(save?.bytes ?? Number.NaN)} sent` : ""),
          },
        ],
        data: {
          mode,
          fileBytes: bytes,
          baselineRssBytes: baseline,
          peakRssSampledBytes: sampled.peakBytes,
          peakRssKernelBytes: hwmReset ? peakRss() : null,
          afterRssBytes: after,
          turnMs: Math.round(turnMs),
          healthMs: { max: healthMs.max, p99: healthMs.p99, p50: healthMs.p50, n: healthMs.n },
          save: save ?? null,
        },
      };
    } finally {
      await s.close();
    }
  },
};
