/**
 * The task's lifecycle as an executable table (SPEC §1): every TaskStatus
 * move is a named row carrying its guard (the statuses it starts from, the
 * initStatus it needs, the cleanup claim it needs) and its effects (the
 * initStatus it writes, what happens to the warm-window deadline). The
 * InitStatus moves have their table too: INACTIVE → the mode's steps in
 * order → ACTIVE, and back to INACTIVE from anywhere but a running turn.
 *
 * Running work (an initialization or a turn) is owned by one server process,
 * recorded in the row with a lease (services/task-ownership.ts): the moves
 * that start work take the ownership in the same write, the moves that end it
 * release it, and only the owner moves its work along.
 *
 * This module only decides; utils/task-status.ts applies a decision as one
 * guarded compare-and-set. Nothing else decides which moves exist.
 */
import type { TaskRow } from "@repo/db";
import { getStepsForMode, InitStatus, TaskStatus, type TurnOutcome } from "@repo/types";

const { INITIALIZING, RUNNING, STOPPED, COMPLETED, FAILED, ARCHIVED } = TaskStatus;

export type { TurnOutcome };

export interface TaskMove {
  /** Statuses the move starts from. */
  from: readonly TaskStatus[];
  to: TaskStatus;
  /** The initStatus the task must have for the move. */
  requiresInitStatus?: InitStatus;
  /** The cleanup claim the move needs: none at all, or the mover's own. */
  claim?: "unclaimed" | "held";
  /**
   * Ownership of the task's running work: `take` (no live owner; the mover
   * becomes the owner), `hold` (the mover owns it and keeps it), `release`
   * (the mover owns it and gives it up: the work ended), `clear` (no live
   * owner other than the mover; none afterwards).
   */
  owner: "take" | "hold" | "release" | "clear";
  /** The initStatus written together with the move. */
  initStatus?: InitStatus;
  /**
   * The warm-window deadline: `start` sets it to now + the cleanup delay
   * (remote tasks only; a local task gets none), `clear` removes it and any
   * claim, `keep` leaves it as it is.
   */
  cleanup: "start" | "clear" | "keep";
  /** How the run ended, recorded as the task's lastOutcome (moves that end a run). */
  outcome?: TurnOutcome;
  trigger: string;
}

const NOT_ARCHIVED = [INITIALIZING, RUNNING, STOPPED, COMPLETED, FAILED] as const;
const AT_REST = [COMPLETED, STOPPED, FAILED] as const;

/** Every TaskStatus move there is. A caller names one; the row says what it may do. */
export const TASK_MOVES = {
  startTurn: {
    from: [INITIALIZING],
    to: RUNNING,
    requiresInitStatus: InitStatus.ACTIVE,
    cleanup: "clear",
    owner: "hold",
    trigger: "initialization reached ACTIVE",
  },
  failInitialization: {
    from: [INITIALIZING],
    to: FAILED,
    initStatus: InitStatus.INACTIVE,
    cleanup: "clear",
    outcome: FAILED,
    owner: "release",
    trigger: "a step failed",
  },
  stopInitialization: {
    from: [INITIALIZING],
    to: STOPPED,
    initStatus: InitStatus.INACTIVE,
    cleanup: "clear",
    outcome: STOPPED,
    owner: "release",
    trigger: "user stop during initialization",
  },
  completeTurn: {
    from: [RUNNING],
    to: COMPLETED,
    cleanup: "start",
    outcome: COMPLETED,
    owner: "release",
    trigger: "agent finished its turn",
  },
  failTurn: {
    from: [RUNNING],
    to: FAILED,
    cleanup: "start",
    outcome: FAILED,
    owner: "release",
    trigger: "agent failed",
  },
  stopTurn: {
    from: [RUNNING],
    to: STOPPED,
    cleanup: "start",
    outcome: STOPPED,
    owner: "release",
    trigger: "user stop during a turn",
  },
  interruptTurn: {
    from: [RUNNING],
    to: STOPPED,
    cleanup: "keep",
    outcome: STOPPED,
    owner: "release",
    trigger: "the process running the turn went away",
  },
  interruptTurnWorkspaceRemoved: {
    from: [RUNNING],
    to: STOPPED,
    initStatus: InitStatus.INACTIVE,
    cleanup: "clear",
    outcome: STOPPED,
    owner: "release",
    trigger: "the process running the turn went away; its work was saved and its sandbox removed",
  },
  startWarmFollowUp: {
    from: AT_REST,
    to: RUNNING,
    requiresInitStatus: InitStatus.ACTIVE,
    claim: "unclaimed",
    cleanup: "clear",
    owner: "take",
    trigger: "follow-up on a warm workspace",
  },
  beginReinitialization: {
    from: [...AT_REST, ARCHIVED],
    to: INITIALIZING,
    requiresInitStatus: InitStatus.INACTIVE,
    cleanup: "clear",
    owner: "take",
    trigger: "follow-up that re-initializes",
  },
  archiveByCleanup: {
    from: NOT_ARCHIVED,
    to: ARCHIVED,
    claim: "held",
    initStatus: InitStatus.INACTIVE,
    cleanup: "clear",
    owner: "clear",
    trigger: "warm window expired: workspace cleaned up",
  },
  archiveByUser: {
    from: NOT_ARCHIVED,
    to: ARCHIVED,
    initStatus: InitStatus.INACTIVE,
    cleanup: "clear",
    owner: "clear",
    trigger: "archived by user",
  },
} as const satisfies Record<string, TaskMove>;

export type TaskMoveName = keyof typeof TASK_MOVES;

/** The move that ends a turn with `outcome`. */
export const END_TURN_MOVES: Record<TurnOutcome, TaskMoveName> = {
  COMPLETED: "completeTurn",
  FAILED: "failTurn",
  STOPPED: "stopTurn",
};

type GuardedFields = Pick<TaskRow, "status" | "initStatus" | "cleanupClaimedBy" | "ownerId" | "ownerLeaseUntil">;

/** Who makes a move, and when. */
export interface Mover {
  /** The server process making the move (the owner it takes, holds or releases). */
  ownerId: string;
  now: Date;
  /** The cleanup worker, for claim-held moves. */
  claimedBy?: string;
}

/** True when `row` has an owner other than `mover` whose lease has not run out. */
export function hasOtherLiveOwner(row: Pick<TaskRow, "ownerId" | "ownerLeaseUntil">, mover: Mover): boolean {
  return (
    row.ownerId !== null &&
    row.ownerId !== mover.ownerId &&
    row.ownerLeaseUntil !== null &&
    row.ownerLeaseUntil.getTime() >= mover.now.getTime()
  );
}

/** Why `move` cannot be made from `row` now by `mover`, or null when it can. */
export function moveRefusal(move: TaskMove, row: GuardedFields, mover: Mover): string | null {
  if (!move.from.includes(row.status)) return `${row.status} is not one of ${move.from.join(", ")}`;
  if (move.requiresInitStatus && row.initStatus !== move.requiresInitStatus) {
    return `initStatus is ${row.initStatus}, needs ${move.requiresInitStatus}`;
  }
  if (move.claim === "unclaimed" && row.cleanupClaimedBy) return "cleanup in progress";
  if (move.claim === "held" && (!mover.claimedBy || row.cleanupClaimedBy !== mover.claimedBy)) {
    return "cleanup claim lost";
  }
  if ((move.owner === "hold" || move.owner === "release") && row.ownerId !== mover.ownerId) {
    return "the work is owned by another server process";
  }
  if ((move.owner === "take" || move.owner === "clear") && hasOtherLiveOwner(row, mover)) {
    return "another server process runs the task's work";
  }
  return null;
}

/**
 * The provisioning step (or ACTIVE) that may follow `current` for a task of
 * `mode`: the first step after INACTIVE, each step after the one before it,
 * ACTIVE after the last. Null after ACTIVE.
 */
export function nextInitStatus(mode: TaskRow["mode"], current: InitStatus): InitStatus | null {
  const order: InitStatus[] = [InitStatus.INACTIVE, ...getStepsForMode(mode), InitStatus.ACTIVE];
  const index = order.indexOf(current);
  return index >= 0 && index < order.length - 1 ? order[index + 1]! : null;
}

/**
 * Why `row` cannot move to initStatus `to` now, or null when it can. The steps
 * of an initialization are the owner's (`ownerId`) to make.
 */
export function initStatusRefusal(
  row: Pick<TaskRow, "mode" | "status" | "initStatus" | "ownerId">,
  to: InitStatus,
  ownerId: string,
): string | null {
  if (to === InitStatus.INACTIVE) {
    if (row.status === RUNNING) return "an agent turn is running";
    return row.status === INITIALIZING && row.ownerId !== ownerId ? "the initialization has another owner" : null;
  }
  if (row.status !== INITIALIZING) return `task is ${row.status}`;
  if (row.ownerId !== ownerId) return "the initialization has another owner";
  const next = nextInitStatus(row.mode, row.initStatus);
  return next === to ? null : `${to} does not follow ${row.initStatus} in ${row.mode} mode`;
}

/** Statuses in which a warm remote workspace may carry a cleanup deadline. */
export const CLEANUP_SCHEDULABLE_STATUSES: readonly TaskStatus[] = AT_REST;
