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
import { errorMessage } from "../errors";
import type { Logger } from "../logger";
import type { Clock, TimerHandle } from "../utils/clock";
import type { TaskChanges } from "../utils/task-changes";
import type { TaskStatusStore } from "../utils/task-status";
import { type CleanupClaims, cleanupWorkerId } from "./cleanup-claims";
import type { TaskRepository } from "./task-repository";
import type { WorkspaceTeardown } from "./workspace-teardown";

export interface TaskCleanupDeps {
  clock: Clock;
  tasks: TaskRepository;
  status: TaskStatusStore;
  claims: CleanupClaims;
  teardown: WorkspaceTeardown;
  changes: TaskChanges;
  /** Backstop poll, in ms. */
  intervalMs: number;
  /** How long a claim holds before another worker may take it over, in ms. Default 5 minutes. */
  leaseMs?: number;
  /** Most tasks claimed by one query (never more than free teardown slots). Default 50. */
  batchSize?: number;
  /** Teardowns run at once. Default 4. */
  concurrency?: number;
  /** Identifies this worker in claims. Default: cleanupWorkerId(). */
  workerId?: string;
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
  /** Wakes a pass that waits for its teardowns, so it claims what fell due meanwhile. */
  private wake: (() => void) | null = null;
  private stopped = true;

  constructor(private readonly deps: TaskCleanupDeps) {
    this.workerId = deps.workerId ?? cleanupWorkerId();
  }

  /** Starts the service: processes what is already due, then waits for deadlines. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.unsubscribe = this.deps.changes.subscribe((change) => {
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
      this.wake?.();
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

  /**
   * One pass: cleans up due tasks, `concurrency` at a time, until none is
   * due; then arms the timer for the next deadline. Tasks are claimed only
   * when a teardown slot is free, and again whenever one frees up or a
   * deadline passes (trigger()), so a task that falls due during a long pass
   * starts as soon as there is room instead of after the whole pass — and a
   * claim is never held by a task still waiting for a slot.
   */
  async runOnce(): Promise<number> {
    const { claims, batchSize = 50, concurrency = 4, leaseMs = 5 * 60_000 } = this.deps;
    let cleaned = 0;
    const inFlight = new Set<Promise<void>>();
    for (;;) {
      const free = concurrency - inFlight.size;
      const claimed = free > 0 ? await claims.claimDue(this.workerId, leaseMs, Math.min(batchSize, free)) : [];
      for (const id of claimed) {
        const work: Promise<void> = this.cleanupTask(id)
          .then((archived) => {
            if (archived) cleaned++;
          })
          .finally(() => inFlight.delete(work));
        inFlight.add(work);
      }
      // The timer fired for a deadline just claimed; point it at the next one, which may pass during this pass.
      if (claimed.length > 0 && !this.stopped) await this.armForNextDeadline();
      if (inFlight.size === 0) break;
      const woken = new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      await Promise.race([...inFlight, woken]);
      this.wake = null;
    }
    if (!this.stopped) await this.armForNextDeadline();
    return cleaned;
  }

  /** Saves, destroys, archives one claimed task. Returns true when it was archived. */
  private async cleanupTask(taskId: string): Promise<boolean> {
    const { status, claims, teardown, clock } = this.deps;
    const log = this.deps.log.child({ taskId });
    let attempts = 0;
    try {
      const task = await this.deps.tasks.get(taskId);
      attempts = task.cleanupAttempts;
      if (task.cleanupClaimedBy !== this.workerId) return false;
      const started = clock.now().getTime();
      log.info({ worker: this.workerId }, "cleanup.started");
      await teardown.saveAndDestroy(task);
      const archived = await status.archiveByCleanup(taskId, this.workerId);
      if (!archived) {
        log.warn("cleanup.claim.lost");
        return false;
      }
      log.info({ lagMs: started - (task.scheduledCleanupAt?.getTime() ?? started) }, "cleanup.done");
      this.deps.onCleaned?.(taskId);
      return true;
    } catch (error) {
      const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempts);
      const reason = errorMessage(error);
      log.warn({ err: reason, attempts: attempts + 1, retryInMs: delay }, "cleanup.failed");
      await claims
        .release(taskId, this.workerId, new Date(clock.now().getTime() + delay), `cleanup failed: ${reason}`)
        .catch((releaseError) => log.error({ err: releaseError }, "cleanup.release.failed"));
      return false;
    }
  }

  private async armForNextDeadline(): Promise<void> {
    const next = await this.deps.claims.nextDeadline();
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
