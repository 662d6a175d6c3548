/**
 * An agent that floods its output, measured from outside the server: a
 * `shell` task runs `head -c <bytes> /dev/urandom | base64` on a server that
 * runs as a child process, while this process asks GET /api/health over and
 * over and reads the server's resident memory from /proc. The probe must
 * live in another process than the server: inside it, a blocked event loop
 * would delay the probe too and hide the stall it is looking for. It follows
 * the task through the API rather than the socket, so that the stream (ten
 * megabytes of chunks) does not keep this process busy between two probes.
 *
 * On a busy machine a health request also waits for a core. A server started
 * with `loopProbeEnv()` carries loop-probe.mjs, which tells the two apart:
 * `loopHolds()` gives the main thread's CPU time per 10 ms tick of its event
 * loop, whose longest is the longest the server's own work held the loop.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { getTask } from "./faults";
import type { ServerProcess } from "./server-process";

const LOOP_PROBE = fileURLToPath(new URL("./loop-probe.mjs", import.meta.url));

export interface FloodResult {
  taskId: string;
  /** The status the turn ended with. */
  status: string;
  /** From RUNNING to the end of the turn, ms. */
  turnMs: number;
  /** When the turn started and ended as this process saw it, epoch ms. */
  startedAt: number;
  endedAt: number;
  /** GET /api/health latencies while the turn ran, ms, in the order measured. */
  healthMs: number[];
  rssBeforeMb: number;
  rssMaxMb: number;
  rssAfterMb: number;
}

/** Bytes `head -c <bytes> /dev/urandom | base64` prints: base64 text wrapped at 76 columns, each line ending in \n. */
export function base64OutputBytes(bytes: number): number {
  const chars = 4 * Math.ceil(bytes / 3);
  return chars + Math.ceil(chars / 76);
}

export function rssMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) / 1024 : Number.NaN;
}

/** The server's RSS; a server that has exited fails the measurement with what it printed last. */
function serverRssMb(server: ServerProcess): number {
  if (server.child.exitCode === null && server.child.signalCode === null) {
    try {
      return rssMb(server.pid);
    } catch {
      // It exited between the check and the read.
    }
  }
  throw new Error(
    `the server exited during the turn (${server.child.exitCode ?? server.child.signalCode ?? "status unknown"}):\n${server.output().slice(-4000)}`,
  );
}

/**
 * Creates the flooding task and probes health every `intervalMs` from the
 * moment it runs until its turn has ended (or `timeoutMs` passed).
 */
export async function floodTask(
  server: ServerProcess,
  repoUrl: string,
  bytes: number,
  options: { intervalMs?: number; timeoutMs?: number } = {},
): Promise<FloodResult> {
  return measureTurn(
    server,
    async () => {
      const created = await server.api<{ task: { id: string } }>("POST", "/api/tasks", {
        repoUrl,
        message: `head -c ${bytes} /dev/urandom | base64`,
      });
      if (created.status !== 201) throw new Error(`POST /api/tasks answered ${created.status}: ${created.text}`);
      return created.body.task.id;
    },
    options,
  );
}

/**
 * Starts a turn (`start` sends the request and gives the task's id) and
 * probes health every `intervalMs` from the moment the turn runs until it
 * has ended (or `timeoutMs` passed), reading the server's RSS each time.
 */
export async function measureTurn(
  server: ServerProcess,
  start: () => Promise<string>,
  { intervalMs = 20, timeoutMs = 300_000 } = {},
): Promise<FloodResult> {
  const rssBeforeMb = serverRssMb(server);
  const taskId = await start();
  const status = async (): Promise<string> => (await getTask(server, taskId)).status;
  const deadline = Date.now() + timeoutMs;
  let current = await status();
  while (current === "INITIALIZING") {
    if (Date.now() > deadline) throw new Error("the task never started its turn");
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
    current = await status();
  }
  const started = performance.now();
  const startedAt = Date.now();
  const healthMs: number[] = [];
  let rssMaxMb = rssBeforeMb;
  for (let probe = 1; current === "RUNNING"; probe++) {
    if (Date.now() > deadline) {
      current = "timed out";
      break;
    }
    const asked = performance.now();
    const reply = await fetch(`${server.url}/api/health`, { signal: AbortSignal.timeout(timeoutMs) });
    await reply.text();
    healthMs.push(performance.now() - asked);
    rssMaxMb = Math.max(rssMaxMb, serverRssMb(server));
    if (probe % 5 === 0) current = await status();
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  const turnMs = performance.now() - started;
  const endedAt = Date.now();
  const rssAfterMb = serverRssMb(server);
  return { taskId, status: current, turnMs, startedAt, endedAt, healthMs, rssBeforeMb, rssMaxMb, rssAfterMb };
}

/** Environment that makes a server process carry the event-loop probe, writing to `file` when it exits. */
export function loopProbeEnv(file: string): Record<string, string> {
  return { NODE_OPTIONS: `--import=${LOOP_PROBE}`, UMBRA_LOOP_PROBE_FILE: file };
}

/** Main-thread CPU per event-loop tick (ms) between `from` and `to` (epoch ms), from the probe's file. */
export function loopHolds(file: string, from: number, to: number): number[] {
  const samples = JSON.parse(readFileSync(file, "utf8")) as [number, number, number, number][];
  return samples.filter(([at]) => at >= from && at <= to).map(([, , cpuMs]) => cpuMs);
}

/** The probe's file in a server's data directory. */
export function loopProbeFile(dataDir: string): string {
  return join(dataDir, "loop-probe.json");
}
