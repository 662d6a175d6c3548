/**
 * What saving a one-line turn costs, on a 2 MB and a 20 MB repository
 * (1,000 and 10,000 random 2 KiB files; the same edited text file in both),
 * remote and local. The `shell` agent appends one line to that file; the
 * figure is the save itself, from the server's `workspace.saved` log line
 * (the save's own clock: sandbox snapshot, pack, transfer, store update),
 * plus the objects and bytes that moved. The save only sends the new commit's
 * objects, so the ratio of the two repositories should stay near 1; what is
 * left is git looking at every file of the workspace for changes.
 *
 * Each series: one task, its first turn `true`, then the one-line follow-ups.
 */
import { createLargeRepo, EDITED_FILE } from "../../test/support/large-repo";
import { benchTempDir } from "../lib/repos";
import type { Row, Section, SectionResult } from "../lib/section";
import { type Mode, startBenchServer } from "../lib/server";
import { formatBytes, formatMs, rounded, type Summary, summarize } from "../lib/stats";

interface SavedLine {
  msg: string;
  taskId?: string;
  ms?: number;
  objects?: number;
  bytes?: number;
}

interface SeriesResult {
  mode: Mode;
  repoBytes: number;
  files: number;
  saveMs: Summary;
  turnMs: Summary;
  objects: number[];
  bytes: number[];
}

async function runSeries(
  mode: Mode,
  repo: { path: string; bytes: number; fileCount: number },
  turns: number,
  log: (m: string) => void,
): Promise<SeriesResult> {
  const saved: SavedLine[] = [];
  const s = await startBenchServer(mode, {
    onLog: (line) => {
      if (line.includes('"workspace.saved"')) saved.push(JSON.parse(line) as SavedLine);
    },
  });
  const turnMs: number[] = [];
  try {
    const task = await s.createTask(repo.path, "true");
    await s.client.join(task.id);
    await s.client.waitForStatus(task.id, "COMPLETED");
    saved.length = 0;
    for (let i = 0; i < turns; i++) {
      const from = s.client.count(task.id);
      const started = performance.now();
      await s.followUp(task.id, `echo 'turn ${i}' >> ${EDITED_FILE}`);
      await s.client.waitForStatus(task.id, "COMPLETED", { from });
      turnMs.push(performance.now() - started);
    }
    await s.deleteTask(task.id);
  } finally {
    await s.close();
  }
  const result: SeriesResult = {
    mode,
    repoBytes: repo.bytes,
    files: repo.fileCount,
    saveMs: summarize(saved.map((line) => line.ms ?? Number.NaN)),
    turnMs: summarize(turnMs),
    objects: saved.map((line) => line.objects ?? 0),
    bytes: saved.map((line) => line.bytes ?? 0),
  };
  log(
    `${mode}, ${formatBytes(repo.bytes)}: save p50 ${formatMs(result.saveMs.p50)}, turn p50 ${formatMs(result.turnMs.p50)}, ` +
      `objects sent ${[...new Set(result.objects)].join("/")}`,
  );
  return result;
}

export const saveCostSection: Section = {
  name: "save-cost",
  title: "Saving a one-line turn: 2 MB against 20 MB",
  async run({ quick, log }): Promise<SectionResult> {
    const turns = quick ? 4 : 15;
    const small = createLargeRepo({ files: 1000, fileBytes: 2048, bigFileBytes: 0 }, benchTempDir("save-2mb"));
    const large = createLargeRepo({ files: 10_000, fileBytes: 2048, bigFileBytes: 0 }, benchTempDir("save-20mb"));
    const rows: Row[] = [];
    const series: SeriesResult[] = [];
    for (const mode of ["remote", "local"] as const) {
      const a = await runSeries(mode, small, turns, log);
      const b = await runSeries(mode, large, turns, log);
      series.push(a, b);
      const ratio = b.saveMs.p50 / a.saveMs.p50;
      for (const x of [a, b]) {
        rows.push({
          metric: `${mode}, ${formatBytes(x.repoBytes)} (${x.files.toLocaleString("en")} files): one-line save`,
          value:
            `p50 ${formatMs(x.saveMs.p50)} · max ${formatMs(x.saveMs.max)} (n=${x.saveMs.n})` +
            (mode === "remote" ? `, ${Math.max(...x.objects)} objects / ${Math.max(...x.bytes)} bytes sent` : ""),
        });
      }
      rows.push({
        metric: `${mode}: save time 20 MB / 2 MB (p50)`,
        value: `${ratio.toFixed(2)}×`,
        target: "≈ 1 (< 1.5×)",
        met: ratio < 1.5,
      });
    }
    return {
      rows,
      data: {
        turns,
        series: series.map((x) => ({
          mode: x.mode,
          repoBytes: x.repoBytes,
          files: x.files,
          saveMs: rounded(x.saveMs),
          turnPostToCompletedMs: rounded(x.turnMs),
          objectsSent: x.objects,
          bytesSent: x.bytes,
        })),
      },
    };
  },
};
