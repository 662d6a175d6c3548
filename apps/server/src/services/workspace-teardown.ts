/**
 * Saving and destroying a task's workspace, shared by the user's archive and
 * the cleanup service. The order is the point: the work is saved to the
 * repository store first, then the workspace (or VM) is destroyed, and only
 * then does the task read ARCHIVED / INACTIVE. A failed save stops the
 * teardown, so work is never destroyed unsaved.
 */
import type { TaskRow } from "@repo/db";
import type { WorkspaceManager } from "../execution/types";
import type { Logger } from "../logger";
import type { TaskStatusStore } from "../utils/task-status";
import type { TaskRepository } from "./task-repository";

export interface WorkspaceTeardownDeps {
  status: TaskStatusStore;
  workspaces: WorkspaceManager;
  tasks: TaskRepository;
  log: Logger;
}

export class WorkspaceTeardown {
  constructor(private readonly deps: WorkspaceTeardownDeps) {}

  /** Saves the work, destroys the workspace, ends ARCHIVED / INACTIVE; null when the task was archived meanwhile. */
  async archive(taskId: string, reason: string): Promise<TaskRow | null> {
    const task = await this.deps.tasks.get(taskId);
    await this.saveAndDestroy(task);
    return this.deps.status.archiveByUser(taskId, reason);
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
}
