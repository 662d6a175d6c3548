/**
 * The task status machine: the one table of allowed TaskStatus moves and the
 * only functions that write `status`, `initStatus` or `scheduledCleanupAt`.
 *
 * Every write is a guarded compare-and-set inside a transaction that also
 * records a status-history row: the row is locked, the move is checked against
 * the table (and the InitStatus guard), and the UPDATE repeats the guard in
 * its WHERE clause. A move the table does not allow raises
 * InvalidTransitionError and changes nothing. Listeners hear about a change
 * only after its transaction commits, and changes to one task are reported in
 * the order they were made.
 */
import { type Db, queryRows, type TaskRow, taskStatusHistory, tasks } from "@repo/db";
import { InitStatus, isInitStep, type TaskMode, TaskStatus } from "@repo/types";
import { and, eq, inArray, isNull, type SQL, sql } from "drizzle-orm";
import { InvalidTransitionError, NotFoundError } from "../errors";
import type { Clock } from "./clock";
import { DB_RETRY_DEADLINE_MS, retryTransient } from "./db-retry";
import { KeyedMutex } from "./keyed-mutex";

const { INITIALIZING, RUNNING, STOPPED, COMPLETED, FAILED, ARCHIVED } = TaskStatus;

export interface StatusTransition {
  from: readonly TaskStatus[];
  to: TaskStatus;
  /** The task's initStatus must be this before the move. */
  requiresInitStatus?: InitStatus;
  trigger: string;
}

/** SPEC §1: the only TaskStatus moves there are. */
export const TASK_STATUS_TRANSITIONS: readonly StatusTransition[] = [
  {
    from: [INITIALIZING],
    to: RUNNING,
    requiresInitStatus: InitStatus.ACTIVE,
    trigger: "initialization reached ACTIVE",
  },
  { from: [INITIALIZING], to: FAILED, trigger: "a step failed" },
  { from: [INITIALIZING, RUNNING], to: STOPPED, trigger: "user stop" },
  { from: [RUNNING], to: COMPLETED, trigger: "agent finished its turn" },
  { from: [RUNNING], to: FAILED, trigger: "agent failed" },
  {
    from: [COMPLETED, STOPPED, FAILED],
    to: RUNNING,
    requiresInitStatus: InitStatus.ACTIVE,
    trigger: "follow-up on a warm workspace",
  },
  {
    from: [COMPLETED, STOPPED, FAILED, ARCHIVED],
    to: INITIALIZING,
    requiresInitStatus: InitStatus.INACTIVE,
    trigger: "follow-up that re-initializes",
  },
  { from: [INITIALIZING, RUNNING, STOPPED, COMPLETED, FAILED], to: ARCHIVED, trigger: "cleanup ran, or user archived" },
];

/** The transition for `from → to`, or undefined when the table has none. */
export function findTransition(from: TaskStatus, to: TaskStatus): StatusTransition | undefined {
  return TASK_STATUS_TRANSITIONS.find((t) => t.to === to && t.from.includes(from));
}

/** Statuses in which a warm remote workspace may carry a cleanup deadline. */
export const CLEANUP_SCHEDULABLE_STATUSES: readonly TaskStatus[] = [COMPLETED, STOPPED, FAILED];

/** Non-status fields that may be written together with a status change. */
export interface TaskFieldsPatch {
  errorMessage?: string | null;
  initializationError?: string | null;
  workspacePath?: string | null;
  indexedCommitSha?: string | null;
  baseCommitSha?: string | null;
  branch?: string | null;
  baseBranch?: string | null;
}

export interface StatusWriteOptions {
  /** Why the move happened; stored in the history row. */
  reason?: string;
  /** Other fields to write in the same statement. */
  patch?: TaskFieldsPatch;
  /** Also set initStatus in the same statement (e.g. FAILED + INACTIVE). */
  initStatus?: InitStatus;
  /** Also clear the cleanup schedule in the same statement. */
  clearCleanup?: boolean;
  /** Also set the cleanup deadline in the same statement. */
  scheduledCleanupAt?: Date;
  /** Refuse while the cleanup service holds a claim on the task. */
  requireUnclaimed?: boolean;
  /** Refuse unless this cleanup worker holds the claim on the task. */
  claimedBy?: string;
}

export interface TaskChange {
  task: TaskRow;
  previous: TaskRow;
  at: Date;
}

export type TaskChangeListener = (change: TaskChange) => void;

export interface NewTaskInput {
  id: string;
  title: string;
  mode: TaskMode;
  repoUrl: string;
  baseBranch?: string | null;
  branch?: string | null;
}

type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];
type TaskUpdate = Partial<typeof tasks.$inferInsert>;

export interface TaskStatusDeps {
  db: Db;
  clock: Clock;
  /** Hears every committed change, in order per task. Must not throw. */
  onChange?: TaskChangeListener;
  /** How long a write is retried while the database connection is lost, in ms. Default 60000. */
  retryDeadlineMs?: number;
}

export type TaskStatusStore = ReturnType<typeof createTaskStatusStore>;

export function createTaskStatusStore({ db, clock, onChange, retryDeadlineMs = DB_RETRY_DEADLINE_MS }: TaskStatusDeps) {
  const mutex = new KeyedMutex();
  // A write lost to a dropped connection is run again (see db-retry.ts): a task must not stay
  // INITIALIZING or RUNNING because the database blinked while its status moved.
  const retrying = <T>(fn: () => Promise<T>) => retryTransient(fn, { deadlineMs: retryDeadlineMs });

  /**
   * Locks the row, lets `plan` decide the update (or throw), applies it with
   * the guard repeated in the WHERE clause, writes history, commits, then
   * notifies listeners.
   */
  function write(
    taskId: string,
    reason: string | undefined,
    plan: (row: TaskRow, now: Date) => { update: TaskUpdate; guard: SQL | undefined },
  ): Promise<TaskRow> {
    return mutex.run(taskId, async () => {
      const now = clock.now();
      const { previous, task } = await retrying(() =>
        db.transaction(async (tx) => {
          const [row] = await tx.select().from(tasks).where(eq(tasks.id, taskId)).for("update");
          if (!row) throw new NotFoundError("task", taskId);
          const { update, guard } = plan(row, now);
          const [updated] = await tx
            .update(tasks)
            .set({ ...update, version: row.version + 1, updatedAt: now })
            .where(and(eq(tasks.id, taskId), eq(tasks.version, row.version), guard))
            .returning();
          if (!updated) throw new InvalidTransitionError(taskId, "status", row.status, update.status ?? row.status);
          await recordHistory(tx, row, updated, now, reason);
          return { previous: row, task: updated };
        }),
      );
      if (
        previous.status !== task.status ||
        previous.initStatus !== task.initStatus ||
        previous.scheduledCleanupAt?.getTime() !== task.scheduledCleanupAt?.getTime()
      ) {
        onChange?.({ task, previous, at: now });
      }
      return task;
    });
  }

  /** Moves `status` along the transition table; see StatusWriteOptions for what may ride along. */
  function setTaskStatus(taskId: string, to: TaskStatus, options: StatusWriteOptions = {}): Promise<TaskRow> {
    return write(taskId, options.reason, (row) => {
      const transition = findTransition(row.status, to);
      if (!transition) throw new InvalidTransitionError(taskId, "status", row.status, to);
      if (transition.requiresInitStatus && row.initStatus !== transition.requiresInitStatus) {
        throw new InvalidTransitionError(
          taskId,
          "status",
          row.status,
          to,
          `initStatus is ${row.initStatus}, needs ${transition.requiresInitStatus}`,
        );
      }
      if (options.requireUnclaimed && row.cleanupClaimedBy) {
        throw new InvalidTransitionError(taskId, "status", row.status, to, "cleanup in progress");
      }
      if (options.claimedBy && row.cleanupClaimedBy !== options.claimedBy) {
        throw new InvalidTransitionError(taskId, "status", row.status, to, "cleanup claim lost");
      }
      const update: TaskUpdate = { status: to, ...options.patch };
      if (options.initStatus) update.initStatus = options.initStatus;
      if (to === ARCHIVED) update.initStatus = InitStatus.INACTIVE;
      if (to === ARCHIVED || to === RUNNING || to === INITIALIZING || options.clearCleanup) {
        update.scheduledCleanupAt = null;
      }
      if (options.scheduledCleanupAt) update.scheduledCleanupAt = options.scheduledCleanupAt;
      if (update.scheduledCleanupAt === null) clearClaim(update);
      assertInvariants(taskId, row, update);
      const guards = [inArray(tasks.status, [...transition.from])];
      if (transition.requiresInitStatus) guards.push(eq(tasks.initStatus, transition.requiresInitStatus));
      if (options.requireUnclaimed) guards.push(isNull(tasks.cleanupClaimedBy));
      if (options.claimedBy) guards.push(eq(tasks.cleanupClaimedBy, options.claimedBy));
      return { update, guard: and(...guards) };
    });
  }

  /**
   * Sets the workspace's infrastructure state. Provisioning steps and ACTIVE
   * are only written while the task is INITIALIZING; INACTIVE (no workspace)
   * is refused while an agent runs, and clears any cleanup schedule.
   */
  function setInitStatus(taskId: string, step: InitStatus, options: { reason?: string; patch?: TaskFieldsPatch } = {}) {
    return write(taskId, options.reason, (row) => {
      const update: TaskUpdate = { initStatus: step, ...options.patch };
      let guard: SQL | undefined;
      if (isInitStep(step) || step === InitStatus.ACTIVE) {
        if (row.status !== INITIALIZING) {
          throw new InvalidTransitionError(taskId, "initStatus", row.initStatus, step, `task is ${row.status}`);
        }
        guard = eq(tasks.status, INITIALIZING);
      } else {
        if (row.status === RUNNING) {
          throw new InvalidTransitionError(taskId, "initStatus", row.initStatus, step, "an agent turn is running");
        }
        update.scheduledCleanupAt = null;
        clearClaim(update);
        guard = inArray(tasks.status, [INITIALIZING, STOPPED, COMPLETED, FAILED, ARCHIVED]);
      }
      return { update, guard };
    });
  }

  /**
   * Starts the warm window: the workspace is cleaned up `delayMinutes` from
   * now unless a follow-up cancels it. Only a warm remote task that is not
   * busy may carry a schedule.
   */
  function scheduleTaskCleanup(taskId: string, delayMinutes: number, options: { reason?: string } = {}) {
    if (!Number.isFinite(delayMinutes) || delayMinutes < 0) {
      throw new RangeError(`delayMinutes must be a non-negative number, got ${delayMinutes}`);
    }
    return write(taskId, options.reason ?? "warm window started", (row, now) => {
      const at = new Date(now.getTime() + Math.round(delayMinutes * 60_000));
      if (
        row.mode !== "remote" ||
        row.initStatus !== InitStatus.ACTIVE ||
        !CLEANUP_SCHEDULABLE_STATUSES.includes(row.status)
      ) {
        throw new InvalidTransitionError(
          taskId,
          "scheduledCleanupAt",
          row.scheduledCleanupAt?.toISOString() ?? null,
          at.toISOString(),
          `cleanup is only scheduled for a warm remote task that is not busy (mode ${row.mode}, ${row.status}/${row.initStatus})`,
        );
      }
      return {
        update: { scheduledCleanupAt: at, cleanupAttempts: 0 },
        guard: and(
          eq(tasks.mode, "remote"),
          eq(tasks.initStatus, InitStatus.ACTIVE),
          inArray(tasks.status, [...CLEANUP_SCHEDULABLE_STATUSES]),
          isNull(tasks.cleanupClaimedBy),
        ),
      };
    });
  }

  /**
   * Cancels a pending cleanup. Refused (InvalidTransitionError) when the
   * cleanup service has already claimed the task: the cleanup is under way
   * and the caller must wait for it instead.
   */
  function cancelTaskCleanup(taskId: string, options: { reason?: string } = {}) {
    return write(taskId, options.reason ?? "cleanup cancelled", (row) => {
      if (row.cleanupClaimedBy) {
        throw new InvalidTransitionError(
          taskId,
          "scheduledCleanupAt",
          row.scheduledCleanupAt?.toISOString() ?? null,
          null,
          "cleanup in progress",
        );
      }
      return { update: { scheduledCleanupAt: null, cleanupAttempts: 0 }, guard: isNull(tasks.cleanupClaimedBy) };
    });
  }

  /**
   * Claims up to `limit` tasks whose cleanup is due, for `workerId`, with a
   * lease until `now + leaseMs`. One statement: a task is claimed by one
   * worker only (SKIP LOCKED), and a claim whose lease ran out is taken over.
   */
  async function claimDueCleanups(workerId: string, leaseMs: number, limit: number): Promise<string[]> {
    const now = clock.now();
    const leaseUntil = new Date(now.getTime() + leaseMs);
    const rows = await queryRows<{ id: string }>(
      db,
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
   * Gives a claim back after a failed cleanup; the task stays warm (ACTIVE)
   * and is retried at `retryAt`. No-op when the claim is no longer ours.
   */
  async function releaseCleanupClaim(taskId: string, workerId: string, retryAt: Date): Promise<void> {
    await db
      .update(tasks)
      .set({
        cleanupClaimedBy: null,
        cleanupLeaseUntil: null,
        scheduledCleanupAt: retryAt,
        cleanupAttempts: sql`${tasks.cleanupAttempts} + 1`,
      })
      .where(and(eq(tasks.id, taskId), eq(tasks.cleanupClaimedBy, workerId)));
  }

  /**
   * When the next pending cleanup can be claimed, or null: its deadline, or,
   * while another worker's claim on it holds, the end of that lease. (Its
   * deadline has passed but nothing can be claimed before the lease ends; a
   * timer armed at the deadline would fire again at once, forever.)
   */
  async function nextCleanupDeadline(): Promise<Date | null> {
    const now = clock.now().toISOString();
    const [row] = await queryRows<{ at: string | Date | null }>(
      db,
      sql`SELECT min(CASE WHEN cleanup_claimed_by IS NOT NULL AND cleanup_lease_until >= ${now}
                          THEN cleanup_lease_until + interval '1 millisecond'
                          ELSE scheduled_cleanup_at END) AS at
          FROM tasks WHERE scheduled_cleanup_at IS NOT NULL`,
    );
    return row?.at ? new Date(row.at) : null;
  }

  /** Writes fields that are not part of the status machine (workspace path, commit). */
  function updateTaskFields(taskId: string, patch: TaskFieldsPatch) {
    return write(taskId, undefined, () => ({ update: { ...patch }, guard: undefined }));
  }

  /** Inserts a new task as INITIALIZING / INACTIVE, with its first history row. */
  async function createTask(input: NewTaskInput): Promise<TaskRow> {
    const now = clock.now();
    return retrying(() =>
      db.transaction(async (tx) => {
        const [row] = await tx
          .insert(tasks)
          .values({
            id: input.id,
            title: input.title,
            mode: input.mode,
            repoUrl: input.repoUrl,
            baseBranch: input.baseBranch ?? null,
            branch: input.branch ?? null,
            status: INITIALIZING,
            initStatus: InitStatus.INACTIVE,
            createdAt: now,
            updatedAt: now,
          })
          .returning();
        if (!row) throw new Error("task insert returned no row");
        await tx.insert(taskStatusHistory).values([
          {
            taskId: row.id,
            field: "status",
            fromValue: null,
            toValue: INITIALIZING,
            at: now,
            reason: "task created",
          },
        ]);
        return row;
      }),
    );
  }

  return {
    setTaskStatus,
    setInitStatus,
    scheduleTaskCleanup,
    cancelTaskCleanup,
    updateTaskFields,
    createTask,
    claimDueCleanups,
    releaseCleanupClaim,
    nextCleanupDeadline,
  };
}

function clearClaim(update: TaskUpdate): void {
  update.cleanupClaimedBy = null;
  update.cleanupLeaseUntil = null;
  update.cleanupAttempts = 0;
}

/** The SPEC §1 invariants, checked before writing so a refusal names the rule. */
function assertInvariants(taskId: string, row: TaskRow, update: TaskUpdate): void {
  const status = update.status ?? row.status;
  const initStatus = update.initStatus ?? row.initStatus;
  const scheduled = update.scheduledCleanupAt !== undefined ? update.scheduledCleanupAt : row.scheduledCleanupAt;
  const fail = (detail: string) => {
    throw new InvalidTransitionError(taskId, "status", row.status, status, detail);
  };
  if (status === RUNNING && initStatus !== InitStatus.ACTIVE) fail("RUNNING needs an ACTIVE workspace");
  if (
    scheduled &&
    !(row.mode === "remote" && initStatus === InitStatus.ACTIVE && CLEANUP_SCHEDULABLE_STATUSES.includes(status))
  ) {
    fail("a cleanup schedule needs a warm remote task");
  }
}

async function recordHistory(tx: Tx, before: TaskRow, after: TaskRow, at: Date, reason: string | undefined) {
  const rows: (typeof taskStatusHistory.$inferInsert)[] = [];
  if (before.status !== after.status) {
    rows.push({ taskId: after.id, field: "status", fromValue: before.status, toValue: after.status, at, reason });
  }
  if (before.initStatus !== after.initStatus) {
    rows.push({
      taskId: after.id,
      field: "initStatus",
      fromValue: before.initStatus,
      toValue: after.initStatus,
      at,
      reason,
    });
  }
  if (rows.length > 0) await tx.insert(taskStatusHistory).values(rows);
}
