/**
 * The time an initialization took: from the POST that started it to the
 * workspace's ACTIVE, as the socket client saw it, with the steps from the
 * status-history rows. If ACTIVE came before the client joined the task's
 * room, the history row of ACTIVE (same host clock) stands in.
 */
import { activeAt, type BenchServer, stepDurations } from "./server";

export interface InitTiming {
  /** POST → ACTIVE, ms; NaN when neither the socket nor the history saw ACTIVE. */
  ms: number;
  /** Milliseconds each step took (stepDurations). */
  steps: Record<string, number>;
}

/**
 * POST (already sent at `wall0` / `mono0`: Date.now() and performance.now()
 * right before it) → ACTIVE, looking at the task's status events from index
 * `from` on.
 */
export async function timeToActive(
  s: BenchServer,
  taskId: string,
  from: number,
  mono0: number,
  wall0: number,
): Promise<InitTiming> {
  const active = await s.client
    .waitFor(taskId, (e) => e.initStatus === "ACTIVE", { from, timeoutMs: 30 * 60_000 })
    .catch(() => null);
  const history = await s.history(taskId);
  const ms = active ? active.monoMs - mono0 : (activeAt(history, wall0) ?? Number.NaN) - wall0;
  return { ms, steps: stepDurations(history, wall0) };
}
