/**
 * An agent that floods its output, measured from outside the server: a
 * `shell` task runs `head -c <bytes> /dev/urandom | base64` on a server that
 * runs as a child process, while this process asks GET /api/health over and
 * over and reads the server's resident memory from /proc. The probe must
 * live in another process than the server: inside it, a blocked event loop
 * would delay the probe too and hide the stall it is looking for.
 */
import { readFileSync } from "node:fs";
import { EventRecorder } from "./server";
import type { ServerProcess } from "./server-process";

export interface FloodResult {
  taskId: string;
  /** The status the turn ended with. */
  status: string;
  /** From RUNNING to the end of the turn, ms. */
  turnMs: number;
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

/**
 * Creates the flooding task and probes health every `intervalMs` from the
 * moment it runs until its turn has ended (or `timeoutMs` passed).
 */
export async function floodTask(
  server: ServerProcess,
  repoUrl: string,
  bytes: number,
  { intervalMs = 20, timeoutMs = 300_000 } = {},
): Promise<FloodResult> {
  const recorder = new EventRecorder(server.url);
  try {
    const rssBeforeMb = rssMb(server.pid);
    const created = await server.api<{ task: { id: string } }>("POST", "/api/tasks", {
      repoUrl,
      message: `head -c ${bytes} /dev/urandom | base64`,
    });
    if (created.status !== 201) throw new Error(`POST /api/tasks answered ${created.status}: ${created.text}`);
    const taskId = created.body.task.id;
    await recorder.join(taskId);
    await recorder.waitForStatus("RUNNING", undefined, 120_000);
    const started = performance.now();
    let ended: string | null = null;
    void recorder
      .waitFor((e) => e.name === "stream-chunk" && e.payload.type === "turn-end", timeoutMs)
      .then((e) => {
        ended = e.name === "stream-chunk" && e.payload.type === "turn-end" ? e.payload.status : "unknown";
      })
      .catch(() => {
        ended = "timed out";
      });
    const healthMs: number[] = [];
    let rssMaxMb = rssBeforeMb;
    while (ended === null) {
      const asked = performance.now();
      const reply = await fetch(`${server.url}/api/health`, { signal: AbortSignal.timeout(timeoutMs) });
      await reply.text();
      healthMs.push(performance.now() - asked);
      rssMaxMb = Math.max(rssMaxMb, rssMb(server.pid));
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
    const turnMs = performance.now() - started;
    return { taskId, status: ended, turnMs, healthMs, rssBeforeMb, rssMaxMb, rssAfterMb: rssMb(server.pid) };
  } finally {
    recorder.close();
  }
}
