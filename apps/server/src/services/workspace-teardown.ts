/**
 * Saving and destroying a task's workspace, shared by the user's archive, the
 * cleanup service, the health sweep and the take-over of interrupted work.
 * The order is the point: the work is saved to the repository store first,
 * then the workspace (or VM) is destroyed, and only then does the task read
 * ARCHIVED / INACTIVE.
 *
 * Invariants:
 * - Work is never destroyed unsaved because a sandbox did not answer. A
 *   workspace that is gone (its process exited, its pod is missing) has
 *   nothing left to save. One that is silent (it runs but does not answer,
 *   e.g. frozen) is kept: the task records since when (and says so in
 *   `errorMessage`), the caller retries with backoff, and only after
 *   `unreachableGraceMs` (SANDBOX_UNREACHABLE_GRACE_MS) is it destroyed
 *   without saving — an event recorded on the task (errorMessage and a
 *   system message in its conversation) and in the log.
 * - A failed save stops the teardown.
 */
import type { TaskRow } from "@repo/db";
import { AppError } from "../errors";
import { probeWorkspace, type WorkspaceManager } from "../execution/types";
import type { Logger } from "../logger";
import { type Clock, systemClock } from "../utils/clock";
import type { TaskStatusStore } from "../utils/task-status";
import type { MessageLog } from "./message-log";
import type { TaskRepository } from "./task-repository";

export const DEFAULT_UNREACHABLE_GRACE_MS = 6 * 60 * 60_000;

/** The task's sandbox does not answer: its work cannot be saved now, and it is not destroyed. */
export class WorkspaceUnreachableError extends AppError {
  constructor(
    readonly taskId: string,
    readonly report: string,
  ) {
    super("TASK_BUSY", 409, report);
  }
}

export interface WorkspaceTeardownDeps {
  status: TaskStatusStore;
  workspaces: WorkspaceManager;
  tasks: TaskRepository;
  log: Logger;
  /** Default: the system clock. */
  clock?: Clock;
  /** How long a silent sandbox is kept before it is destroyed unsaved, in ms (SANDBOX_UNREACHABLE_GRACE_MS). Default 6 h. */
  unreachableGraceMs?: number;
  /** Where the destruction of an unsaved sandbox is recorded in the task's conversation. */
  messages?: Pick<MessageLog, "append">;
}

export class WorkspaceTeardown {
  constructor(private readonly deps: WorkspaceTeardownDeps) {}

  /** Saves the work, destroys the workspace, ends ARCHIVED / INACTIVE; null when the task was archived meanwhile. */
  async archive(taskId: string, reason: string): Promise<TaskRow | null> {
    const task = await this.deps.tasks.get(taskId);
    await this.saveAndDestroy(task);
    return this.deps.status.archiveByUser(taskId, reason);
  }

  /**
   * Saves the work when the workspace answers, then destroys it. A silent
   * sandbox throws WorkspaceUnreachableError until its grace period is over.
   */
  async saveAndDestroy(task: TaskRow): Promise<void> {
    const { workspaces, log } = this.deps;
    const probe = await probeWorkspace(workspaces, task);
    if (probe.state === "answers") {
      await workspaces.saveWork(task, "Umbra: save work before the workspace is removed");
      await this.answered(task);
    } else if (probe.state === "gone") {
      log.warn({ taskId: task.id, detail: probe.detail }, "teardown.workspace.gone");
    } else {
      await this.unreachable(task, probe.detail ?? "it does not answer");
    }
    await workspaces.teardown(task);
  }

  /** Destroys the workspace without saving (the task is being deleted). */
  async destroy(task: TaskRow): Promise<void> {
    await this.deps.workspaces.teardown(task);
  }

  /**
   * Records that the task's sandbox does not answer and throws
   * WorkspaceUnreachableError, until the grace period since it first did not
   * answer is over; then records that it is destroyed unsaved and returns.
   */
  async unreachable(task: TaskRow, detail: string): Promise<void> {
    const { clock = systemClock, unreachableGraceMs = DEFAULT_UNREACHABLE_GRACE_MS, status, log } = this.deps;
    const now = clock.now();
    const since = task.workspaceUnreachableSince ?? now;
    const destroyAt = new Date(since.getTime() + unreachableGraceMs);
    const logged = log.child({ taskId: task.id });
    if (now.getTime() < destroyAt.getTime()) {
      const report =
        `The sandbox has not answered since ${since.toISOString()} (${detail}). Its unsaved work is kept and ` +
        `saving it is retried; unless it answers, it is destroyed without saving at ${destroyAt.toISOString()}.`;
      if (!task.workspaceUnreachableSince || task.errorMessage !== report) {
        await status.updateTaskFields(task.id, { workspaceUnreachableSince: since, errorMessage: report });
      }
      logged.warn({ since, destroyAt, detail }, "teardown.workspace.unreachable");
      throw new WorkspaceUnreachableError(task.id, report);
    }
    const record =
      `The sandbox did not answer from ${since.toISOString()} to ${now.toISOString()} (${detail}); after that grace ` +
      `period (SANDBOX_UNREACHABLE_GRACE_MS) it was destroyed without saving its uncommitted work.`;
    await status.updateTaskFields(task.id, { workspaceUnreachableSince: null, errorMessage: record });
    await this.deps.messages?.append(task.id, "system", record);
    logged.error({ since, detail }, "teardown.destroyed_unsaved");
  }

  /** The sandbox answers (again): the task no longer reports it as unreachable. */
  async answered(task: TaskRow): Promise<void> {
    if (!task.workspaceUnreachableSince) return;
    await this.deps.status.updateTaskFields(task.id, { workspaceUnreachableSince: null, errorMessage: null });
    this.deps.log.info({ taskId: task.id }, "teardown.workspace.answers_again");
  }
}
