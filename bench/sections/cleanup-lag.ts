/**
 * Cleanup lag: how late after its deadline a warm remote workspace is
 * cleaned up, measured with the system clock on a real server in remote mode
 * with the `process` provider — every one of the tasks gets a real
 * sandboxed sidecar, and the real TaskCleanupService saves its work,
 * destroys the sandbox and archives it.
 *
 * TASK_CLEANUP_DELAY_MS is short (1 s), so each task's deadline comes soon
 * after its turn. A few pipelines create tasks back to back, so deadlines
 * keep arriving while other sandboxes start: the service works under load.
 * For each task: deadline = `scheduledCleanupAt` of its COMPLETED event,
 * archived = when its ARCHIVED event reached the socket; lag = archived −
 * deadline. The service's own `cleanup.done` log line splits the lag into
 * the wait before the cleanup started and the cleanup itself (save, destroy,
 * archive).
 */
import { createSmallRepo, settleDisk } from "../lib/repos";
import type { Section, SectionResult } from "../lib/section";
import { startBenchServer } from "../lib/server";
import { formatMs, rounded, summarize } from "../lib/stats";

const CLEANUP_DELAY_MS = 1000;

export const cleanupLagSection: Section = {
  name: "cleanup-lag",
  title: "Cleanup lag (deadline → ARCHIVED)",
  async run({ quick, log }): Promise<SectionResult> {
    const total = quick ? 30 : 200;
    const pipelines = 4;
    const repo = createSmallRepo();
    const started = new Map<string, number>();
    const s = await startBenchServer("remote", {
      // The workspace cap would clean warm sandboxes up early: the cleanup service's lag is what is measured.
      env: { TASK_CLEANUP_DELAY_MS: String(CLEANUP_DELAY_MS), MAX_ACTIVE_WORKSPACES: String(total + 1) },
      onLog: (line) => {
        if (!line.includes('"cleanup.done"')) return;
        const entry = JSON.parse(line) as { taskId: string; lagMs: number };
        started.set(entry.taskId, entry.lagMs);
      },
    });
    const lags: { taskId: string; deadline: number; archivedAt: number; serverArchivedAt: number }[] = [];
    const waits: Promise<void>[] = [];
    settleDisk();
    const began = performance.now();
    let next = 0;
    try {
      const pipeline = async () => {
        for (let i = next++; i < total; i = next++) {
          const task = await s.createTask(repo.path, "true");
          await s.client.join(task.id);
          const completed = await s.client.waitForStatus(task.id, "COMPLETED");
          const deadline = Date.parse(completed.event.scheduledCleanupAt!);
          const from = s.client.count(task.id);
          waits.push(
            s.client.waitForStatus(task.id, "ARCHIVED", { from, timeoutMs: 60_000 }).then((archived) => {
              lags.push({
                taskId: task.id,
                deadline,
                archivedAt: archived.wallMs,
                serverArchivedAt: Date.parse(archived.event.timestamp),
              });
            }),
          );
          if ((i + 1) % 50 === 0) log(`${i + 1}/${total} tasks created`);
        }
      };
      await Promise.all(Array.from({ length: pipelines }, pipeline));
      await Promise.all(waits);
    } finally {
      await s.close();
    }
    const seconds = (performance.now() - began) / 1000;
    const lag = summarize(lags.map((l) => l.archivedAt - l.deadline));
    const serverLag = summarize(lags.map((l) => l.serverArchivedAt - l.deadline));
    const startLag = summarize(lags.map((l) => started.get(l.taskId) ?? Number.NaN).filter(Number.isFinite));
    const work = summarize(
      lags.filter((l) => started.has(l.taskId)).map((l) => l.serverArchivedAt - (l.deadline + started.get(l.taskId)!)),
    );
    log(`lag p50 ${formatMs(lag.p50)}, p99 ${formatMs(lag.p99)}, max ${formatMs(lag.max)} over ${lag.n} tasks`);
    return {
      rows: [
        {
          metric: `lag p50 / p99 (${lag.n} tasks, real sandboxes)`,
          value: `${formatMs(lag.p50)} / ${formatMs(lag.p99)}`,
          target: "p99 < 2 s",
          met: lag.p99 < 2000,
        },
        {
          metric: "of which: wait before the cleanup starts (p50 / p99)",
          value: `${formatMs(startLag.p50)} / ${formatMs(startLag.p99)}`,
        },
        {
          metric: "of which: save + destroy + archive (p50 / p99)",
          value: `${formatMs(work.p50)} / ${formatMs(work.p99)}`,
        },
      ],
      data: {
        method:
          "real server, remote mode, process provider under bubblewrap; every task a real sandbox; " +
          `${pipelines} pipelines creating tasks back to back; TASK_CLEANUP_DELAY_MS=${CLEANUP_DELAY_MS}`,
        tasks: lags.length,
        seconds: Math.round(seconds),
        lagMs: rounded(lag),
        lagByServerTimestampMs: rounded(serverLag),
        startLagMs: rounded(startLag),
        saveDestroyArchiveMs: rounded(work),
      },
    };
  },
};
