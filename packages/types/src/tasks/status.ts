/**
 * Pure helpers that read a task's two status fields. The server decides
 * transitions (apps/server/src/utils/task-status.ts); these only describe.
 */
import { InitStatus, TaskStatus } from "../enums";
import { STEP_DISPLAY_NAMES } from "../init/steps";

export interface TaskStatusFields {
  status: TaskStatus;
  initStatus: InitStatus;
}

/** The task is provisioning (first time or again). */
export function isInitializing(task: TaskStatusFields): boolean {
  return task.status === TaskStatus.INITIALIZING;
}

/** The task's workspace exists and is ready for the agent. */
export function isWorkspaceActive(task: TaskStatusFields): boolean {
  return task.initStatus === InitStatus.ACTIVE;
}

/** An agent turn or an initialization is in flight; a follow-up would be refused. */
export function isBusy(task: TaskStatusFields): boolean {
  return task.status === TaskStatus.INITIALIZING || task.status === TaskStatus.RUNNING;
}

/** A follow-up message is accepted now (warm or after re-initialization). */
export function canFollowUp(task: TaskStatusFields): boolean {
  return !isBusy(task);
}

/** A follow-up now would have to re-create the workspace first. */
export function needsReinitialization(task: TaskStatusFields): boolean {
  return canFollowUp(task) && task.initStatus === InitStatus.INACTIVE;
}

/** One line for people: what the task is doing now. */
export function getStatusText(task: TaskStatusFields): string {
  switch (task.status) {
    case TaskStatus.INITIALIZING:
      return task.initStatus === InitStatus.INACTIVE || task.initStatus === InitStatus.ACTIVE
        ? "Initializing workspace"
        : `Initializing: ${STEP_DISPLAY_NAMES[task.initStatus]}`;
    case TaskStatus.RUNNING:
      return "Agent running";
    case TaskStatus.COMPLETED:
      return task.initStatus === InitStatus.ACTIVE ? "Ready for follow-up" : "Completed — workspace inactive";
    case TaskStatus.STOPPED:
      return "Stopped";
    case TaskStatus.FAILED:
      return "Failed";
    case TaskStatus.ARCHIVED:
      return "Workspace archived — send a message to re-create it";
  }
}
