/**
 * Pure helpers that read a task's status fields, shared by the web app and
 * the CLI so both say the same words. The server decides transitions
 * (apps/server/src/utils/task-moves.ts); these only describe.
 */
import { TaskStatus, type TurnOutcome } from "../enums";

export interface TaskStatusFields {
  status: TaskStatus;
}

/** An agent turn or an initialization is in flight; a follow-up would be refused. */
export function isBusy(task: TaskStatusFields): boolean {
  return task.status === TaskStatus.INITIALIZING || task.status === TaskStatus.RUNNING;
}

export const OUTCOME_WORDS: Record<TurnOutcome, string> = {
  COMPLETED: "Completed",
  FAILED: "Failed",
  STOPPED: "Stopped",
};

const STATUS_WORDS: Record<TaskStatus, string> = {
  INITIALIZING: "Initializing",
  RUNNING: "Running",
  STOPPED: "Stopped",
  COMPLETED: "Completed",
  FAILED: "Failed",
  ARCHIVED: "Archived",
};

/**
 * How the task's last run ended, as the server recorded it: the status itself
 * while the task rests, the recorded outcome once it is archived, null while
 * it is busy (or for an archived task that never ran).
 */
export function lastOutcome(task: TaskStatusFields & { lastOutcome: TurnOutcome | null }): TurnOutcome | null {
  switch (task.status) {
    case TaskStatus.COMPLETED:
    case TaskStatus.FAILED:
    case TaskStatus.STOPPED:
      return task.status;
    case TaskStatus.ARCHIVED:
      return task.lastOutcome;
    default:
      return null;
  }
}

/** The task's status in words: "Running", or for an archived task its outcome too ("Completed · archived"). */
export function statusWords(task: TaskStatusFields & { lastOutcome: TurnOutcome | null }): string {
  if (task.status !== TaskStatus.ARCHIVED) return STATUS_WORDS[task.status];
  const outcome = lastOutcome(task);
  return outcome ? `${OUTCOME_WORDS[outcome]} · archived` : "Archived";
}
