/**
 * Retries of failed pushes and forge calls: a timer on the injected clock,
 * armed for the earliest `next_attempt_at`, around `runOnce()`, which claims
 * each due retry (a lease, so two server processes never run the same one)
 * and delivers the task again. Retries survive a restart: `start()` arms the
 * timer from the database.
 */
import type { Logger } from "../logger";
import type { Clock, TimerHandle } from "../utils/clock";
import type { DeliveryStore } from "./delivery-store";

export interface DeliveryRetriesDeps {
  deliveries: DeliveryStore;
  clock: Clock;
  /** Delivers the task again (push, pull request). */
  retry(taskId: string): Promise<void>;
  log: Logger;
  /** How long a claimed retry is held before another process may take it, ms. Default 600000. */
  leaseMs?: number;
}

export class DeliveryRetries {
  private timer: { handle: TimerHandle; at: number } | null = null;
  private running: Promise<void> | null = null;
  private stopped = true;

  constructor(private readonly deps: DeliveryRetriesDeps) {}

  async start(): Promise<void> {
    this.stopped = false;
    const next = await this.deps.deliveries.nextRetryAt();
    if (next) this.schedule(next);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.handle.cancel();
    this.timer = null;
    await this.running;
  }

  /** Makes sure the timer fires by `at`. */
  schedule(at: Date): void {
    if (this.stopped) return;
    if (this.timer && this.timer.at <= at.getTime()) return;
    this.timer?.handle.cancel();
    const delay = Math.max(0, at.getTime() - this.deps.clock.now().getTime());
    const handle = this.deps.clock.setTimer(() => {
      this.timer = null;
      this.running ??= this.runOnce().finally(() => {
        this.running = null;
      });
    }, delay);
    this.timer = { handle, at: at.getTime() };
  }

  /** Runs every retry due now, then arms the timer for the next one. */
  async runOnce(): Promise<void> {
    const { deliveries, clock, log } = this.deps;
    try {
      const now = clock.now();
      for (const row of await deliveries.dueRetries(now)) {
        const leaseUntil = new Date(now.getTime() + (this.deps.leaseMs ?? 600_000));
        if (!(await deliveries.claimRetry(row, leaseUntil))) continue;
        await this.deps
          .retry(row.taskId)
          .catch((error) =>
            log.error({ taskId: row.taskId, reason: (error as Error).message }, "delivery.retry.failed"),
          );
        // A retry that found nothing left to do leaves the lease behind; a new failure replaced it.
        await deliveries.releaseRetry(row.taskId, leaseUntil);
      }
      const next = await deliveries.nextRetryAt();
      if (next) this.schedule(next);
    } catch (error) {
      log.error({ reason: (error as Error).message }, "delivery.retry.sweep_failed");
    }
  }
}
