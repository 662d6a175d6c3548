/**
 * Saving and destroying a task's workspace, shared by the user's archive and
 * the cleanup service. The order is the point: the work is saved to the
 * repository store first, then the workspace (or VM) is destroyed, and only
 * then does the task read ARCHIVED / INACTIVE. A failed save stops the
 * teardown, so work is never destroyed unsaved.
 */
import type { TaskRow } from "@repo/db";
import { TaskStatus } from "@repo/types";
import { NotFoundError } from "../errors";
import type { WorkspaceManager } from "../execution/types";
import type { Logger } from "../logger";
import type { TaskChange, TaskStatusStore } from "../utils/task-status";

export interface WorkspaceTeardownDeps {
  status: TaskStatusStore;
  workspaces: WorkspaceManager;
  loadTask(taskId: string): Promise<TaskRow>;
  /** Registers a listener for committed task changes; returns an unsubscribe function. */
  subscribe(listener: (change: TaskChange) => void): () => void;
  log: Logger;
  /** How often to re-read a task claimed by another process, in ms. Default 250. */
  pollMs?: number;
}

export class WorkspaceTeardown {
  constructor(private readonly deps: WorkspaceTeardownDeps) {}

  /** Saves the work, destroys the workspace, ends ARCHIVED / INACTIVE / no schedule. */
  async archive(taskId: string, reason: string): Promise<TaskRow> {
    const task = await this.deps.loadTask(taskId);
    await this.saveAndDestroy(task);
    return this.deps.status.setTaskStatus(taskId, TaskStatus.ARCHIVED, { reason });
  }

  /** Saves the work when the workspace still answers, then destroys it. */
  async saveAndDestroy(task: TaskRow): Promise<void> {
    const { workspaces, log } = this.deps;
    if (await workspaces.isAlive(task)) {
      await workspaces.saveWork(task, "Umbra: save work before the workspace is removed");
    } else {
      log.warn({ taskId: task.id }, "teardown.workspace.unreachable");
    }
    await workspaces.teardown(task);
  }

  /** Destroys the workspace without saving (the task is being deleted). */
  async destroy(task: TaskRow): Promise<void> {
    await this.deps.workspaces.teardown(task);
  }

  /**
   * Waits until no cleanup holds the task (it finished, or its claim was
   * released), then returns the task as it is.
   */
  async waitForCleanup(taskId: string, timeoutMs = 5 * 60_000): Promise<TaskRow> {
    const started = Date.now();
    for (;;) {
      const task = await this.deps.loadTask(taskId);
      if (!task.cleanupClaimedBy) return task;
      if (Date.now() - started > timeoutMs) throw new NotFoundError("finished cleanup of task", taskId);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, this.deps.pollMs ?? 250);
        const unsubscribe = this.deps.subscribe((change) => {
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
}
