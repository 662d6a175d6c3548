/**
 * Cleanup claims: the lease a cleanup worker holds on a task while it saves
 * and destroys the task's warm workspace. Everything about them lives here —
 * who a worker is, claiming due tasks, releasing a claim, when the next one
 * can be claimed, waiting for a cleanup to finish, and releasing the claims
 * of workers that died.
 *
 * Invariants:
 * - A task is claimed by one worker at a time: one statement claims it
 *   (UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)); a claim whose
 *   lease ran out is taken over.
 * - A claim ends with the task archived (archiveByCleanup clears it), or is
 *   released through the status store's guarded write, which records the new
 *   deadline in the task's history and emits it like any other change.
 * - "Claim" means this lease and nothing else.
 */
import { type Db, queryRows, type TaskRow, tasks } from "@repo/db";
import { eq, isNotNull, sql } from "drizzle-orm";
import { AppError } from "../errors";
import type { Logger } from "../logger";
import type { Clock } from "../utils/clock";
import { isGoneOnThisHost, processIdentity } from "../utils/process-identity";
import type { TaskChanges } from "../utils/task-changes";
import type { TaskStatusStore } from "../utils/task-status";
import type { TaskRepository } from "./task-repository";

/** A follow-up or archive waited for a cleanup longer than it may. */
export class CleanupInProgressError extends AppError {
  constructor(readonly taskId: string) {
    super("TASK_BUSY", 409, `task ${taskId} is being cleaned up; try again in a moment`);
  }
}

/** A worker id that says where the worker runs (see utils/process-identity.ts). */
export function cleanupWorkerId(): string {
  return processIdentity("cleanup");
}

export interface CleanupClaimsDeps {
  db: Db;
  clock: Clock;
  status: TaskStatusStore;
  tasks: TaskRepository;
  changes: TaskChanges;
  log: Logger;
  /** How often a waiter re-reads a task claimed by another process, in ms. Default 250. */
  pollMs?: number;
}

export class CleanupClaims {
  constructor(private readonly deps: CleanupClaimsDeps) {}

  /**
   * Claims up to `limit` tasks whose cleanup is due, for `workerId`, with a
   * lease until now + `leaseMs`. Returns the claimed task ids.
   */
  async claimDue(workerId: string, leaseMs: number, limit: number): Promise<string[]> {
    const now = this.deps.clock.now();
    const leaseUntil = new Date(now.getTime() + leaseMs);
    const rows = await queryRows<{ id: string }>(
      this.deps.db,
      sql`UPDATE tasks SET cleanup_claimed_by = ${workerId}, cleanup_lease_until = ${leaseUntil.toISOString()}
          WHERE id IN (
            SELECT id FROM tasks
            WHERE scheduled_cleanup_at IS NOT NULL AND scheduled_cleanup_at <= ${now.toISOString()}
              AND (cleanup_claimed_by IS NULL OR cleanup_lease_until < ${now.toISOString()})
            ORDER BY scheduled_cleanup_at
            LIMIT ${limit}
            FOR UPDATE SKIP LOCKED)
          RETURNING id`,
    );
    return rows.map((r) => r.id);
  }

  /**
   * Gives a claim back after a failed cleanup: the task stays warm (ACTIVE),
   * its attempts count up and it is due again at `retryAt`. Null when the
   * claim is no longer `workerId`'s.
   */
  release(taskId: string, workerId: string, retryAt: Date, reason: string): Promise<TaskRow | null> {
    return this.deps.status.write(taskId, reason, (row) =>
      row.cleanupClaimedBy !== workerId
        ? { refused: "cleanup claim lost" }
        : {
            update: {
              cleanupClaimedBy: null,
              cleanupLeaseUntil: null,
              scheduledCleanupAt: retryAt,
              cleanupAttempts: row.cleanupAttempts + 1,
            },
            guard: eq(tasks.cleanupClaimedBy, workerId),
          },
    );
  }

  /**
   * When the next pending cleanup can be claimed, or null: the earliest
   * deadline of an unclaimed (or lease-expired) task, or the end of a live
   * lease — a task whose deadline passed cannot be claimed before its lease
   * ends, and a timer armed at its deadline would fire again at once, forever.
   * Two ordered LIMIT 1 reads, each answered from an index.
   */
  async nextDeadline(): Promise<Date | null> {
    const now = this.deps.clock.now().toISOString();
    const [row] = await queryRows<{ at: string | Date | null }>(
      this.deps.db,
      sql`SELECT least(
            (SELECT scheduled_cleanup_at FROM tasks
              WHERE scheduled_cleanup_at IS NOT NULL AND (cleanup_claimed_by IS NULL OR cleanup_lease_until < ${now})
              ORDER BY scheduled_cleanup_at LIMIT 1),
            (SELECT cleanup_lease_until + interval '1 millisecond' FROM tasks
              WHERE cleanup_claimed_by IS NOT NULL AND cleanup_lease_until >= ${now}
              ORDER BY cleanup_lease_until LIMIT 1)) AS at`,
    );
    return row?.at ? new Date(row.at) : null;
  }

  /**
   * Waits until no cleanup holds the task (it finished, or its claim was
   * released), then returns the task as it is. CleanupInProgressError after
   * `timeoutMs` of waiting.
   */
  async waitForCleanup(taskId: string, timeoutMs = 5 * 60_000): Promise<TaskRow> {
    const started = Date.now();
    for (;;) {
      const task = await this.deps.tasks.get(taskId);
      if (!task.cleanupClaimedBy) return task;
      if (Date.now() - started > timeoutMs) throw new CleanupInProgressError(taskId);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, this.deps.pollMs ?? 250);
        const unsubscribe = this.deps.changes.subscribe((change) => {
          if (change.task.id === taskId && !change.task.cleanupClaimedBy) done();
        });
        function done() {
          clearTimeout(timer);
          unsubscribe();
          resolve();
        }
      });
    }
  }

  /**
   * Releases claims whose worker ran on this host in a process that is gone
   * (it crashed mid-cleanup): its pid no longer runs, or runs a process that
   * started at another time (a restarted container's server gets the same
   * pid). The task keeps its passed deadline, so a cleanup service picks it up
   * at once. Claims of other hosts are left to their lease.
   */
  async releaseClaimsOfDeadWorkers(): Promise<string[]> {
    const { db, clock, log } = this.deps;
    const claimed = await db.select().from(tasks).where(isNotNull(tasks.cleanupClaimedBy));
    const released: string[] = [];
    for (const task of claimed) {
      const claimer = task.cleanupClaimedBy!;
      if (!isGoneOnThisHost(claimer)) continue;
      const row = await this.release(
        task.id,
        claimer,
        task.scheduledCleanupAt ?? clock.now(),
        "cleanup claim of a dead worker released",
      );
      if (!row) continue;
      released.push(task.id);
      log.warn({ taskId: task.id, worker: claimer }, "recovery.cleanup_claim.released");
    }
    return released;
  }
}
