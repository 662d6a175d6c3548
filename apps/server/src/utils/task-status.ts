/**
 * The task status store: the only code that writes `status`, `initStatus` or
 * `scheduledCleanupAt`. Callers name a move of utils/task-moves.ts
 * (`startWarmFollowUp`, `endTurn`, `archiveByCleanup`, …); the move's row
 * says what it guards and what it changes, so no caller assembles a move.
 *
 * Every write is a guarded compare-and-set in one transaction: the row is
 * locked, the move is checked against its row, the UPDATE repeats the guard
 * in its WHERE clause, and a history row is written for each of the three
 * fields that changed. A lost race is an expected outcome, not an exception:
 * a move returns the new row, or null when its guard no longer holds (only
 * the API layer turns that into a 409). Listeners hear a change only after
 * its transaction commits, in the order changes to one task were made.
 *
 * Ownership of running work rides on the same writes: the store moves as
 * one server process (`ownerId`), a move that starts work takes the ownership
 * with a lease of `ownerLeaseMs`, the moves that end it release it, and the
 * moves in between are refused to anyone but the owner.
 *
 * The warm window has one length, `cleanupDelayMs`; the seed's entry points
 * (`setInitStatus`, `scheduleTaskCleanup`, `cancelTaskCleanup`) are thin
 * wrappers over the same guarded write.
 */
import { type Db, type TaskRow, taskStatusHistory, tasks } from "@repo/db";
import { InitStatus, isInitStep, type TaskMode, TaskStatus } from "@repo/types";
import { and, eq, inArray, isNull, lt, ne, or, type SQL, sql } from "drizzle-orm";
import { NotFoundError } from "../errors";
import type { Clock } from "./clock";
import { DB_RETRY_DEADLINE_MS, retryTransient } from "./db-retry";
import { KeyedMutex } from "./keyed-mutex";
import { processIdentity } from "./process-identity";
import {
  CLEANUP_SCHEDULABLE_STATUSES,
  END_TURN_MOVES,
  initStatusRefusal,
  type Mover,
  moveRefusal,
  TASK_MOVES,
  type TaskMove,
  type TaskMoveName,
  type TurnOutcome,
} from "./task-moves";

/** Non-status fields that may be written together with a move. */
export interface TaskFieldsPatch {
  errorMessage?: string | null;
  initializationError?: string | null;
  workspacePath?: string | null;
  workspaceUnreachableSince?: Date | null;
  indexedCommitSha?: string | null;
  baseCommitSha?: string | null;
  branch?: string | null;
  baseBranch?: string | null;
}

export interface TaskChange {
  task: TaskRow;
  /** The row before the change; null for a change heard from another server process. */
  previous: TaskRow | null;
  at: Date;
  /** True when another server process made the change (its socket events are that process's to send). */
  remote?: boolean;
}

export type TaskChangeListener = (change: TaskChange) => void;

export interface NewTaskInput {
  id: string;
  title: string;
  mode: TaskMode;
  repoUrl: string;
  baseBranch?: string | null;
  branch?: string | null;
  /** The task's agent kind and model (fixed at creation). */
  agent?: string | null;
  model?: string | null;
}

type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];
export type TaskUpdate = Partial<typeof tasks.$inferInsert>;

/** A guarded write's decision: what to write, the SQL guard to repeat, or why not. */
export type WritePlan = { update: TaskUpdate; guard: SQL | undefined } | { refused: string };

export interface TaskStatusDeps {
  db: Db;
  clock: Clock;
  /** The warm window after a turn of a remote task, in ms (TASK_CLEANUP_DELAY_MS). */
  cleanupDelayMs: number;
  /** Hears every committed change, in order per task. Must not throw. */
  onChange?: TaskChangeListener;
  /** How long a write is retried while the database connection is lost, in ms. Default 60000. */
  retryDeadlineMs?: number;
  /** The server process this store moves as: the owner of the work it starts. Default: a new process identity. */
  ownerId?: string;
  /** How long an owner's lease holds without a heartbeat, in ms (OWNER_LEASE_MS). Default 30000. */
  ownerLeaseMs?: number;
}

interface MoveOptions {
  reason?: string;
  patch?: TaskFieldsPatch;
  /** The cleanup worker making a claim-held move. */
  claimedBy?: string;
  /** The row as the caller has just read it: the move is tried on it in one statement first. */
  seen?: TaskRow;
}

export type TaskStatusStore = ReturnType<typeof createTaskStatusStore>;

export function createTaskStatusStore(deps: TaskStatusDeps) {
  const { db, clock, onChange, cleanupDelayMs, retryDeadlineMs = DB_RETRY_DEADLINE_MS } = deps;
  const ownerId = deps.ownerId ?? processIdentity("replica");
  const ownerLeaseMs = deps.ownerLeaseMs ?? DEFAULT_OWNER_LEASE_MS;
  const mutex = new KeyedMutex();
  // A write lost to a dropped connection is run again (see db-retry.ts): a task must not stay
  // INITIALIZING or RUNNING because the database blinked while its status moved.
  const retrying = <T>(fn: () => Promise<T>) => retryTransient(fn, { deadlineMs: retryDeadlineMs });

  /**
   * Locks the row, lets `plan` decide the update (or refuse), applies it with
   * the guard repeated in the WHERE clause, writes history, commits, then
   * notifies listeners. Null when refused; NotFoundError when there is no task.
   */
  function write(
    taskId: string,
    reason: string | undefined,
    plan: (row: TaskRow, now: Date) => WritePlan,
    seen?: TaskRow,
  ): Promise<TaskRow | null> {
    return mutex.run(taskId, async () => {
      const now = clock.now();
      const unchanged = seen ? await retrying(() => writeOverSeen(seen, reason, plan, now)) : null;
      const written =
        unchanged ??
        (await retrying(() =>
          db.transaction(async (tx) => {
            const [row] = await tx.select().from(tasks).where(eq(tasks.id, taskId)).for("update");
            if (!row) throw new NotFoundError("task", taskId);
            const decision = plan(row, now);
            if ("refused" in decision) return null;
            const [updated] = await tx
              .update(tasks)
              .set({ ...decision.update, version: row.version + 1, updatedAt: now })
              .where(and(eq(tasks.id, taskId), eq(tasks.version, row.version), decision.guard))
              .returning();
            if (!updated) return null;
            await recordHistory(tx, row, updated, now, reason);
            return { previous: row, task: updated };
          }),
        ));
      if (!written) return null;
      const { previous, task } = written;
      if (
        previous.status !== task.status ||
        previous.initStatus !== task.initStatus ||
        previous.scheduledCleanupAt?.getTime() !== task.scheduledCleanupAt?.getTime() ||
        previous.errorMessage !== task.errorMessage
      ) {
        onChange?.({ task, previous, at: now });
      }
      return task;
    });
  }

  /**
   * The same write in one statement, for a caller that has just read the
   * row: planned on that row and applied only if the row is still that
   * version (the guard repeated too), with its history rows in the same
   * statement. Null when the plan refuses or the row has moved on since;
   * the locked write then decides on the row as it is.
   */
  async function writeOverSeen(
    seen: TaskRow,
    reason: string | undefined,
    plan: (row: TaskRow, now: Date) => WritePlan,
    now: Date,
  ): Promise<{ previous: TaskRow; task: TaskRow } | null> {
    const decision = plan(seen, now);
    if ("refused" in decision) return null;
    const set = { ...decision.update, version: seen.version + 1, updatedAt: now };
    const moved = db.$with("moved").as(
      db
        .update(tasks)
        .set(set)
        .where(and(eq(tasks.id, seen.id), eq(tasks.version, seen.version), decision.guard))
        .returning(),
    );
    const entries = historyEntries(seen, { ...seen, ...set }, now, reason);
    const values = sql.join(
      entries.map(
        (entry) =>
          sql`(${entry.field}, ${entry.fromValue}::text, ${entry.toValue}, ${now.toISOString()}::timestamptz, ${entry.reason ?? null}::text)`,
      ),
      sql`, `,
    );
    const history = db
      .$with("history", {})
      .as(
        sql`INSERT INTO ${taskStatusHistory} (task_id, field, from_value, to_value, at, reason) SELECT ${moved.id}, entry.* FROM ${moved}, (VALUES ${values}) AS entry`,
      );
    const [task] =
      entries.length > 0
        ? await db.with(moved, history).select().from(moved)
        : await db.with(moved).select().from(moved);
    return task ? { previous: seen, task } : null;
  }

  /** Makes the named move of TASK_MOVES, with its guard and its effects. */
  function move(taskId: string, name: TaskMoveName, options: MoveOptions = {}): Promise<TaskRow | null> {
    const spec: TaskMove = TASK_MOVES[name];
    return write(
      taskId,
      options.reason ?? spec.trigger,
      (row, now) => {
        const mover: Mover = { ownerId, now, claimedBy: options.claimedBy };
        const refused = moveRefusal(spec, row, mover);
        if (refused) return { refused };
        const update: TaskUpdate = { status: spec.to, ...options.patch, ...ownerEffect(spec.owner, now) };
        if (spec.initStatus) update.initStatus = spec.initStatus;
        if (spec.outcome) update.lastOutcome = spec.outcome;
        if (spec.cleanup === "clear") clearCleanup(update);
        if (spec.cleanup === "start") {
          update.scheduledCleanupAt = row.mode === "remote" ? new Date(now.getTime() + cleanupDelayMs) : null;
          update.cleanupAttempts = 0;
        }
        const guards = [inArray(tasks.status, [...spec.from])];
        if (spec.requiresInitStatus) guards.push(eq(tasks.initStatus, spec.requiresInitStatus));
        if (spec.claim === "unclaimed") guards.push(isNull(tasks.cleanupClaimedBy));
        if (spec.claim === "held") guards.push(eq(tasks.cleanupClaimedBy, options.claimedBy!));
        guards.push(ownerGuard(spec.owner, now));
        return { update, guard: and(...guards) };
      },
      options.seen,
    );
  }

  /** What a move does to the ownership of the task's work. */
  function ownerEffect(owner: TaskMove["owner"], now: Date): TaskUpdate {
    return owner === "take" || owner === "hold"
      ? { ownerId, ownerLeaseUntil: new Date(now.getTime() + ownerLeaseMs) }
      : { ownerId: null, ownerLeaseUntil: null };
  }

  /** The ownership guard of a move, repeated in SQL. */
  function ownerGuard(owner: TaskMove["owner"], now: Date): SQL {
    if (owner === "hold" || owner === "release") return eq(tasks.ownerId, ownerId);
    return or(isNull(tasks.ownerId), eq(tasks.ownerId, ownerId), lt(tasks.ownerLeaseUntil, now))!;
  }

  const clearedErrors = { errorMessage: null, initializationError: null };

  return {
    /** The server process this store moves as. */
    ownerId,
    /** How long an owner's lease holds without a heartbeat, in ms. */
    ownerLeaseMs,

    /** Inserts a new task as INITIALIZING / INACTIVE, owned by this process, with its first history row. */
    createTask: (input: NewTaskInput) =>
      insertTask(db, clock, retrying, input, (now) => ({
        ownerId,
        ownerLeaseUntil: new Date(now.getTime() + ownerLeaseMs),
      })),

    /** INITIALIZING → RUNNING once the workspace is ACTIVE. */
    startTurn: (taskId: string) => move(taskId, "startTurn"),
    /** INITIALIZING → FAILED / INACTIVE; `description` names the step and the cause. */
    failInitialization: (taskId: string, description: string) =>
      move(taskId, "failInitialization", {
        reason: description,
        patch: { initializationError: description, errorMessage: description },
      }),
    /** INITIALIZING → STOPPED / INACTIVE: the user stopped the initialization. */
    stopInitialization: (taskId: string, reason: string) =>
      move(taskId, "stopInitialization", { reason, patch: { errorMessage: reason } }),
    /** RUNNING → COMPLETED, FAILED or STOPPED; a remote task's warm window starts. */
    endTurn: (taskId: string, outcome: TurnOutcome, error: string | null) =>
      move(taskId, END_TURN_MOVES[outcome], {
        reason: error ?? TASK_MOVES[END_TURN_MOVES[outcome]].trigger,
        patch: { errorMessage: error },
      }),
    /**
     * RUNNING → STOPPED when the process running the turn is gone; no warm
     * window. With `workspaceRemoved` (its sandbox saved and destroyed) the
     * same write makes it INACTIVE, so no reader sees a STOPPED task whose
     * workspace is gone and still ACTIVE.
     */
    interruptTurn: (taskId: string, message: string, { workspaceRemoved = false } = {}) =>
      move(taskId, workspaceRemoved ? "interruptTurnWorkspaceRemoved" : "interruptTurn", {
        patch: { errorMessage: message },
      }),
    /** COMPLETED/STOPPED/FAILED → RUNNING on a warm, unclaimed workspace; the cleanup is cancelled. */
    /**
     * COMPLETED/STOPPED/FAILED → RUNNING on a warm, unclaimed workspace; the cleanup is cancelled.
     * `seen`: the row the caller has just read, on which the move is tried in one statement first.
     */
    startWarmFollowUp: (taskId: string, seen?: TaskRow) =>
      move(taskId, "startWarmFollowUp", { patch: clearedErrors, seen }),
    /** COMPLETED/STOPPED/FAILED/ARCHIVED → INITIALIZING on an INACTIVE workspace. */
    beginReinitialization: (taskId: string) => move(taskId, "beginReinitialization", { patch: clearedErrors }),
    /** → ARCHIVED / INACTIVE by the cleanup worker that holds the claim. */
    archiveByCleanup: (taskId: string, workerId: string) => move(taskId, "archiveByCleanup", { claimedBy: workerId }),
    /** → ARCHIVED / INACTIVE by the user. */
    archiveByUser: (taskId: string, reason?: string) => move(taskId, "archiveByUser", { reason }),

    /**
     * The seed's InitStatus entry point: the next provisioning step (or ACTIVE)
     * of an INITIALIZING task, in the mode's order; or INACTIVE (no workspace),
     * refused while an agent runs, which also clears any cleanup schedule.
     * `whileWarm`: INACTIVE only if the task is still at rest on an ACTIVE
     * workspace that no cleanup holds — what a health sweep probed; a task
     * that moved on since (re-initializing, claimed) is left alone.
     */
    setInitStatus(
      taskId: string,
      to: InitStatus,
      options: { reason?: string; whileWarm?: boolean } = {},
    ): Promise<TaskRow | null> {
      return write(taskId, options.reason, (row) => {
        const refused =
          options.whileWarm && !isWarm(row) ? "no longer a warm task" : initStatusRefusal(row, to, ownerId);
        if (refused) return { refused };
        const update: TaskUpdate = { initStatus: to };
        if (isInitStep(to) || to === InitStatus.ACTIVE) {
          return {
            update,
            guard: and(
              eq(tasks.status, TaskStatus.INITIALIZING),
              eq(tasks.initStatus, row.initStatus),
              eq(tasks.ownerId, ownerId),
            ),
          };
        }
        clearCleanup(update);
        if (options.whileWarm) {
          const warm = and(
            inArray(tasks.status, CLEANUP_SCHEDULABLE_STATUSES as TaskStatus[]),
            eq(tasks.initStatus, InitStatus.ACTIVE),
            isNull(tasks.cleanupClaimedBy),
          );
          return { update, guard: warm };
        }
        const ownInitialization = or(ne(tasks.status, TaskStatus.INITIALIZING), eq(tasks.ownerId, ownerId));
        return { update, guard: and(inArray(tasks.status, NOT_RUNNING), ownInitialization) };
      });
    },

    /**
     * The seed's schedule entry point: the warm workspace is cleaned up
     * `delayMinutes` from now unless a follow-up cancels it. Only a warm remote
     * task that is not busy and not being cleaned up may carry a schedule.
     */
    scheduleTaskCleanup(taskId: string, delayMinutes: number, options: { reason?: string } = {}) {
      if (!Number.isFinite(delayMinutes) || delayMinutes < 0) {
        throw new RangeError(`delayMinutes must be a non-negative number, got ${delayMinutes}`);
      }
      return write(taskId, options.reason ?? "warm window started", (row, now) => {
        if (
          row.mode !== "remote" ||
          row.initStatus !== InitStatus.ACTIVE ||
          !CLEANUP_SCHEDULABLE_STATUSES.includes(row.status) ||
          row.cleanupClaimedBy
        ) {
          return { refused: `not a warm remote task at rest (mode ${row.mode}, ${row.status}/${row.initStatus})` };
        }
        return {
          update: {
            scheduledCleanupAt: new Date(now.getTime() + Math.round(delayMinutes * 60_000)),
            cleanupAttempts: 0,
          },
          guard: and(
            eq(tasks.mode, "remote"),
            eq(tasks.initStatus, InitStatus.ACTIVE),
            inArray(tasks.status, [...CLEANUP_SCHEDULABLE_STATUSES]),
            isNull(tasks.cleanupClaimedBy),
          ),
        };
      });
    },

    /** The seed's cancel entry point: removes a pending cleanup; null once a cleanup has claimed the task. */
    cancelTaskCleanup(taskId: string, options: { reason?: string } = {}) {
      return write(taskId, options.reason ?? "cleanup cancelled", (row) =>
        row.cleanupClaimedBy
          ? { refused: "cleanup in progress" }
          : { update: { scheduledCleanupAt: null, cleanupAttempts: 0 }, guard: isNull(tasks.cleanupClaimedBy) },
      );
    },

    /** Writes fields that are not part of the status machine (workspace path, commits). */
    updateTaskFields(taskId: string, patch: TaskFieldsPatch): Promise<TaskRow | null> {
      return write(taskId, undefined, () => ({ update: { ...patch }, guard: undefined }));
    },

    /** The guarded write itself, for the cleanup-claims module's own writes (release of a claim). */
    write,
  };
}

const DEFAULT_OWNER_LEASE_MS = 30_000;

const NOT_RUNNING = [
  TaskStatus.INITIALIZING,
  TaskStatus.STOPPED,
  TaskStatus.COMPLETED,
  TaskStatus.FAILED,
  TaskStatus.ARCHIVED,
];

/** At rest on an ACTIVE workspace, and no cleanup holds it. */
function isWarm(row: TaskRow): boolean {
  return (
    CLEANUP_SCHEDULABLE_STATUSES.includes(row.status as TaskStatus) &&
    row.initStatus === InitStatus.ACTIVE &&
    row.cleanupClaimedBy === null
  );
}

function clearCleanup(update: TaskUpdate): void {
  update.scheduledCleanupAt = null;
  update.cleanupClaimedBy = null;
  update.cleanupLeaseUntil = null;
  update.cleanupAttempts = 0;
}

async function insertTask(
  db: Db,
  clock: Clock,
  retrying: <T>(fn: () => Promise<T>) => Promise<T>,
  input: NewTaskInput,
  owner: (now: Date) => Pick<TaskUpdate, "ownerId" | "ownerLeaseUntil">,
): Promise<TaskRow> {
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
          agent: input.agent ?? null,
          model: input.model ?? null,
          status: TaskStatus.INITIALIZING,
          initStatus: InitStatus.INACTIVE,
          ...owner(now),
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
          toValue: TaskStatus.INITIALIZING,
          at: now,
          reason: "task created",
        },
      ]);
      return row;
    }),
  );
}

async function recordHistory(tx: Tx, before: TaskRow, after: TaskRow, at: Date, reason: string | undefined) {
  const rows = historyEntries(before, after, at, reason);
  if (rows.length > 0) await tx.insert(taskStatusHistory).values(rows);
}

/** One history row per changed field of the three the machine owns. A cleared deadline reads "none". */
function historyEntries(before: TaskRow, after: TaskRow, at: Date, reason: string | undefined) {
  const rows: (typeof taskStatusHistory.$inferInsert)[] = [];
  const row = (field: string, fromValue: string | null, toValue: string) =>
    rows.push({ taskId: after.id, field, fromValue, toValue, at, reason });
  if (before.status !== after.status) row("status", before.status, after.status);
  if (before.initStatus !== after.initStatus) row("initStatus", before.initStatus, after.initStatus);
  const deadline = (value: Date | null) => value?.toISOString() ?? null;
  if (deadline(before.scheduledCleanupAt) !== deadline(after.scheduledCleanupAt)) {
    row("scheduledCleanupAt", deadline(before.scheduledCleanupAt), deadline(after.scheduledCleanupAt) ?? "none");
  }
  return rows;
}
