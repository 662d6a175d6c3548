/**
 * A stop sent to another server than the one running the turn: two real
 * server processes A and B (test/support/cluster.ts: one scratch Postgres
 * database, one shared DATA_DIR), the `shell` agent, a turn on A running
 * `sleep 600`.
 *
 * - Cross-server: POST /api/tasks/:id/stop sent to B, which hands the stop to
 *   A over the replica bus and answers once A has ended the turn.
 * - Floor: the same stop sent to A itself, sampled alternately with the
 *   cross-server stops on the same task, so both meet the same machine.
 *
 * Each figure is the time from sending the POST to the `task-status-update`
 * STOPPED arriving at a Socket.IO client connected to B (the event travels
 * from A through the Postgres adapter in both cases, so the difference is the
 * stop's own route). A client on A records the same event for the JSON. Every
 * sample also checks that the turn's `sleep` has really ended before the next
 * follow-up starts one again on A.
 */

import type { TaskDto } from "@repo/types";
import { type Cluster, startCluster } from "../../test/support/cluster";
import { postgresAvailable } from "../../test/support/databases";
import { createTask, DataDirs, followUp } from "../../test/support/faults";
import { processesUnder, type ServerProcess } from "../../test/support/server-process";
import { StatusClient } from "../lib/client";
import { createSmallRepo } from "../lib/repos";
import type { Row, Section, SectionResult } from "../lib/section";
import { formatMs, formatSummary, rounded, type Summary, summarize } from "../lib/stats";

const VARIANTS = ["local", "remote"] as const;
type Variant = (typeof VARIANTS)[number];
/** The bound for a stop received by another server. */
const TARGET_MS = 1000;
const TURN = "sleep 600";

interface Sample {
  via: "B" | "A";
  /** POST sent → STOPPED on B's socket. */
  toEventOnBMs: number;
  /** POST sent → STOPPED on A's socket. */
  toEventOnAMs: number;
  /** POST sent → HTTP answer of the receiving server. */
  answerMs: number;
}

/** Polls /proc until the turn's command runs (or, with `gone`, no longer runs) under the data directory. */
async function turnCommand(dataDir: string, state: "running" | "gone", timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const running = processesUnder(dataDir).some((p) => p.cmdline.includes(TURN));
    if (running === (state === "running")) return;
    if (Date.now() > deadline) throw new Error(`the turn's \`${TURN}\` still ${running ? "runs" : "absent"}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** POST /stop; the task as the server answered it. */
async function stopTask(server: ServerProcess, taskId: string): Promise<TaskDto> {
  const reply = await server.api<{ task: TaskDto }>("POST", `/api/tasks/${taskId}/stop`);
  if (reply.status >= 300) throw new Error(`POST stop answered ${reply.status}: ${reply.text}`);
  return reply.body.task;
}

/** One stop: a follow-up on A starts the turn, the stop goes to `via`. */
async function sample(
  c: Cluster,
  taskId: string,
  via: "A" | "B",
  clients: { a: StatusClient; b: StatusClient },
): Promise<Sample> {
  const [a, b] = c.servers as [ServerProcess, ServerProcess];
  let from = clients.b.count(taskId);
  const started = await followUp(a, taskId, TURN);
  if (started.status !== "RUNNING") throw new Error(`follow-up was not warm: ${started.status}/${started.initStatus}`);
  await clients.b.waitForStatus(taskId, "RUNNING", { from });
  await turnCommand(c.dataDir, "running");
  from = clients.b.count(taskId);
  const fromA = clients.a.count(taskId);
  const onB = clients.b.waitForStatus(taskId, "STOPPED", { from, timeoutMs: 60_000 });
  const onA = clients.a.waitForStatus(taskId, "STOPPED", { from: fromA, timeoutMs: 60_000 });
  const sent = performance.now();
  const answer = await stopTask(via === "B" ? b : a, taskId);
  const answered = performance.now();
  if (answer.status !== "STOPPED") throw new Error(`stop via ${via} answered ${answer.status}`);
  const [eventB, eventA] = await Promise.all([onB, onA]);
  await turnCommand(c.dataDir, "gone", 10_000);
  return {
    via,
    toEventOnBMs: eventB.monoMs - sent,
    toEventOnAMs: eventA.monoMs - sent,
    answerMs: answered - sent,
  };
}

interface VariantResult {
  cross: Summary;
  floor: Summary;
  crossAnswer: Summary;
  floorAnswer: Summary;
  crossOnA: Summary;
  floorOnA: Summary;
  samples: Sample[];
}

async function runVariant(variant: Variant, pairs: number, log: (m: string) => void): Promise<VariantResult> {
  const dataDirs = new DataDirs();
  const c = await startCluster({
    dataDirs,
    count: 2,
    env: {
      AGENT_MODE: variant,
      // No cleanup while the section runs: every follow-up finds the workspace warm.
      TASK_CLEANUP_DELAY_MS: "600000",
      TASK_CLEANUP_INTERVAL_MS: "600000",
      VM_READY_TIMEOUT_MS: "60000",
    },
  });
  const [a, b] = c.servers as [ServerProcess, ServerProcess];
  const clients = { a: await StatusClient.connect(a.url), b: await StatusClient.connect(b.url) };
  const samples: Sample[] = [];
  let closed = false;
  try {
    const repo = createSmallRepo();
    const task = await createTask(a, repo.path, "true");
    await clients.a.join(task.id);
    await clients.b.join(task.id);
    await clients.b.waitForStatus(task.id, "COMPLETED");
    // One unmeasured stop each way: the first turn of each route pays for loading its code paths.
    await sample(c, task.id, "B", clients);
    await sample(c, task.id, "A", clients);
    for (let i = 0; i < pairs; i++) {
      // Alternate which of the pair goes first, so neither route always follows the other.
      const order: ("A" | "B")[] = i % 2 === 0 ? ["B", "A"] : ["A", "B"];
      for (const via of order) samples.push(await sample(c, task.id, via, clients));
    }
    const row = await c.task(task.id);
    if (row.status !== "STOPPED" || row.ownerId !== null) {
      throw new Error(`task ended ${row.status}, owner ${row.ownerId}`);
    }
    clients.a.close();
    clients.b.close();
    closed = true;
    const { exitCodes, leaked } = await c.close();
    if (exitCodes.some((code) => code !== 0) || leaked.length > 0) {
      throw new Error(`servers stopped with ${exitCodes.join(", ")}; left running: ${leaked.join("; ")}`);
    }
  } finally {
    if (!closed) {
      clients.a.close();
      clients.b.close();
      await c.close(20_000).catch(() => undefined);
    }
    await dataDirs.cleanUp();
  }
  const of = (via: "A" | "B", pick: (s: Sample) => number) => summarize(samples.filter((s) => s.via === via).map(pick));
  const result: VariantResult = {
    cross: of("B", (s) => s.toEventOnBMs),
    floor: of("A", (s) => s.toEventOnBMs),
    crossAnswer: of("B", (s) => s.answerMs),
    floorAnswer: of("A", (s) => s.answerMs),
    crossOnA: of("B", (s) => s.toEventOnAMs),
    floorOnA: of("A", (s) => s.toEventOnAMs),
    samples,
  };
  log(`${variant}: stop via B ${formatSummary(result.cross)}; via A (floor) ${formatSummary(result.floor)}`);
  return result;
}

export const crossServerStopSection: Section = {
  name: "cross-server-stop",
  title: "A stop sent to another server",
  variants: VARIANTS,
  async run({ quick, log, variant = "local" }): Promise<SectionResult> {
    if (!(await postgresAvailable())) throw new Error("needs Postgres (TEST_DATABASE_URL or the local default)");
    const mode = variant === "remote" ? "remote" : "local";
    const r = await runVariant(mode, quick ? 3 : 12, log);
    const ratio = (x: number, y: number) => Math.round((x / y) * 100) / 100;
    const rows: Row[] = [
      {
        metric: `${mode}: stop via B → STOPPED on B's socket`,
        value: `${formatSummary(r.cross)} · max ${formatMs(r.cross.max)}`,
        target: `max < ${formatMs(TARGET_MS)}`,
        met: r.cross.max < TARGET_MS,
      },
      {
        metric: `${mode}: floor, the same stop via A`,
        value: `${formatSummary(r.floor)} · max ${formatMs(r.floor.max)}`,
      },
      {
        metric: `${mode}: via B / via A`,
        value: `p50 ${ratio(r.cross.p50, r.floor.p50)}× · p99 ${ratio(r.cross.p99, r.floor.p99)}×`,
      },
    ];
    return {
      rows,
      data: {
        mode,
        targetMs: TARGET_MS,
        crossToStoppedOnBMs: rounded(r.cross),
        floorToStoppedOnBMs: rounded(r.floor),
        crossOverFloorP50: ratio(r.cross.p50, r.floor.p50),
        crossOverFloorP99: ratio(r.cross.p99, r.floor.p99),
        crossAnsweredMs: rounded(r.crossAnswer),
        floorAnsweredMs: rounded(r.floorAnswer),
        crossToStoppedOnAMs: rounded(r.crossOnA),
        floorToStoppedOnAMs: rounded(r.floorOnA),
        samples: r.samples.map((s) => ({
          via: s.via,
          toEventOnBMs: Math.round(s.toEventOnBMs * 100) / 100,
          toEventOnAMs: Math.round(s.toEventOnAMs * 100) / 100,
          answerMs: Math.round(s.answerMs * 100) / 100,
        })),
      },
    };
  },
};
