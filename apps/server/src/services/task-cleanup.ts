/**
 * TaskCleanupService: ends the warm window of remote tasks (seed Phase 4).
 *
 * - Database-first: the schedule is the task row's `scheduledCleanupAt`, so
 *   it survives restarts; deadlines missed while the server was down are
 *   processed as soon as the service starts.
 * - Precise: a timer wakes it at the next deadline; a poll every
 *   `intervalMs` is only the backstop (and finds other processes' schedules).
 * - Safe with several processes on one Postgres: each due task is claimed
 *   atomically with a lease (never cleaned twice; an expired lease is taken
 *   over). A follow-up racing the deadline either clears the schedule first
 *   (nothing to claim) or finds the claim and waits for the cleanup.
 * - A failed teardown is retried with backoff; the task stays ACTIVE (its VM
 *   may still exist) until a teardown succeeds.
 */
import { randomUUID } from "node:crypto";
import type { TaskRow } from "@repo/db";
import { TaskStatus } from "@repo/types";
import { errorMessage } from "../errors";
import type { Logger } from "../logger";
import type { Clock, TimerHandle } from "../utils/clock";
import type { TaskChange, TaskStatusStore } from "../utils/task-status";
import type { WorkspaceTeardown } from "./workspace-teardown";

export interface TaskCleanupDeps {
  clock: Clock;
  loadTask(taskId: string): Promise<TaskRow>;
  status: TaskStatusStore;
  teardown: WorkspaceTeardown;
  /** Backstop poll, in ms. */
  intervalMs: number;
  /** How long a claim holds before another worker may take it over, in ms. Default 5 minutes. */
  leaseMs?: number;
  /** Tasks claimed per pass. Default 50. */
  batchSize?: number;
  /** Teardowns run at once. Default 4. */
  concurrency?: number;
  /** Identifies this worker in claims. Default: random. */
  workerId?: string;
  subscribe(listener: (change: TaskChange) => void): () => void;
  log: Logger;
  onCleaned?(taskId: string): void;
}

const RETRY_BASE_MS = 5_000;
const RETRY_MAX_MS = 10 * 60_000;

export class TaskCleanupService {
  readonly workerId: string;
  private timer: TimerHandle | null = null;
  private timerAt: number | null = null;
  private backstop: TimerHandle | null = null;
  private unsubscribe: (() => void) | null = null;
  private running: Promise<void> | null = null;
  private rerun = false;
  private stopped = true;

  constructor(private readonly deps: TaskCleanupDeps) {
    this.workerId = deps.workerId ?? `cleanup-${randomUUID()}`;
  }

  /** Starts the service: processes what is already due, then waits for deadlines. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.unsubscribe = this.deps.subscribe((change) => {
      const at = change.task.scheduledCleanupAt?.getTime();
      if (at !== undefined && (this.timerAt === null || at < this.timerAt)) this.armAt(at);
    });
    this.armBackstop();
    void this.trigger();
  }

  /** Stops timers and waits for a cleanup in flight to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.timer?.cancel();
    this.backstop?.cancel();
    this.timer = this.backstop = null;
    this.timerAt = null;
    await this.running;
  }

  /** Runs one pass now (or right after the pass in flight). Resolves when done. */
  trigger(): Promise<void> {
    if (this.running) {
      this.rerun = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.rerun = false;
        await this.runOnce().catch((error) => this.deps.log.error({ err: error }, "cleanup.pass.failed"));
      } while (this.rerun && !this.stopped);
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Resolves when no pass is in flight. */
  async whenIdle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** One pass: claim every due task and clean it up; then arm the timer for the next deadline. */
  async runOnce(): Promise<number> {
    const { status, batchSize = 50, concurrency = 4, leaseMs = 5 * 60_000 } = this.deps;
    let cleaned = 0;
    for (;;) {
      const claimed = await status.claimDueCleanups(this.workerId, leaseMs, batchSize);
      if (claimed.length === 0) break;
      const queue = [...claimed];
      const workers = Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
        for (let id = queue.shift(); id; id = queue.shift()) {
          if (await this.cleanupTask(id)) cleaned++;
        }
      });
      await Promise.all(workers);
      if (claimed.length < batchSize) break;
    }
    if (!this.stopped) await this.armForNextDeadline();
    return cleaned;
  }

  /** Saves, destroys, archives one claimed task. Returns true when it was archived. */
  private async cleanupTask(taskId: string): Promise<boolean> {
    const { status, teardown, clock } = this.deps;
    const log = this.deps.log.child({ taskId });
    let attempts = 0;
    try {
      const task = await this.deps.loadTask(taskId);
      attempts = task.cleanupAttempts;
      if (task.cleanupClaimedBy !== this.workerId) return false;
      const started = clock.now().getTime();
      await teardown.saveAndDestroy(task);
      await status.setTaskStatus(taskId, TaskStatus.ARCHIVED, {
        claimedBy: this.workerId,
        reason: "warm window expired: workspace cleaned up",
      });
      log.info({ lagMs: started - (task.scheduledCleanupAt?.getTime() ?? started) }, "cleanup.done");
      this.deps.onCleaned?.(taskId);
      return true;
    } catch (error) {
      const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempts);
      log.warn({ err: errorMessage(error), attempts: attempts + 1, retryInMs: delay }, "cleanup.failed");
      await status
        .releaseCleanupClaim(taskId, this.workerId, new Date(clock.now().getTime() + delay))
        .catch((releaseError) => log.error({ err: releaseError }, "cleanup.release.failed"));
      return false;
    }
  }

  private async armForNextDeadline(): Promise<void> {
    const next = await this.deps.status.nextCleanupDeadline();
    if (next) this.armAt(next.getTime());
  }

  private armAt(at: number): void {
    if (this.stopped) return;
    this.timer?.cancel();
    this.timerAt = at;
    this.timer = this.deps.clock.setTimer(
      () => {
        this.timer = null;
        this.timerAt = null;
        void this.trigger();
      },
      Math.max(0, at - this.deps.clock.now().getTime()),
    );
  }

  private armBackstop(): void {
    this.backstop = this.deps.clock.setTimer(() => {
      if (this.stopped) return;
      this.armBackstop();
      void this.trigger();
    }, this.deps.intervalMs);
  }
}
