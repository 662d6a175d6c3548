/**
 * The task lifecycle (SPEC §2) as the API sees it: create, follow-up, stop,
 * archive, delete. Routes and socket handlers call these; nothing here knows
 * about HTTP.
 *
 * Each operation names the status move it needs and hands the work to the
 * turn runner. A move that loses a race comes back as null; this is the
 * layer that turns such a refusal into TaskBusyError or
 * InvalidTransitionError (409) for the caller.
 */
import { randomUUID } from "node:crypto";
import type { TaskRow } from "@repo/db";
import { type CreateTaskBody, InitStatus, isBusy, TaskStatus } from "@repo/types";
import { InvalidTransitionError, StopRequest, TaskBusyError } from "../errors";
import type { WorkspaceManager } from "../execution/types";
import type { Logger } from "../logger";
import { RepositoryStore } from "../repository/repository-store";
import type { TaskStatusStore } from "../utils/task-status";
import type { CleanupClaims } from "./cleanup-claims";
import type { TaskRepository } from "./task-repository";
import type { TurnRunner } from "./turn-runner";
import type { WorkspaceTeardown } from "./workspace-teardown";

export interface TaskLifecycleDeps {
  tasks: TaskRepository;
  status: TaskStatusStore;
  turns: TurnRunner;
  workspaces: WorkspaceManager;
  teardown: WorkspaceTeardown;
  claims: CleanupClaims;
  store: RepositoryStore;
  log: Logger;
}

export class TaskLifecycle {
  private closing = false;

  constructor(private readonly deps: TaskLifecycleDeps) {}

  /** Creates the task (INITIALIZING / INACTIVE) and starts initializing it at once. */
  async create(body: CreateTaskBody): Promise<TaskRow> {
    this.assertOpen();
    const id = randomUUID();
    const task = await this.deps.status.createTask({
      id,
      title: body.title ?? titleFrom(body.message),
      mode: this.deps.workspaces.mode,
      repoUrl: body.repoUrl,
      baseBranch: body.baseBranch ?? null,
      branch: RepositoryStore.branchFor(id),
    });
    await this.deps.turns.start(task, body.message, { initialize: true });
    return task;
  }

  /**
   * A follow-up message. On a warm workspace the agent starts at once (the
   * cleanup is cancelled in the same write); otherwise the task re-initializes
   * first. Busy tasks are refused with TaskBusyError.
   */
  async followUp(taskId: string, message: string): Promise<TaskRow> {
    this.assertOpen();
    const { tasks, status, turns, workspaces, claims } = this.deps;
    let task = await tasks.get(taskId);
    if (isBusy(task) || turns.isRunning(taskId)) throw new TaskBusyError(taskId, task.status);

    if (task.initStatus === InitStatus.ACTIVE && !task.cleanupClaimedBy) {
      const executor = await workspaces.attach(task);
      const warm = executor ? await status.startWarmFollowUp(taskId) : null;
      if (executor && warm) {
        await turns.start(warm, message, { initialize: false, executor });
        return warm;
      }
      if (!executor) {
        this.deps.log.warn({ taskId }, "followup.workspace.dead");
        await status.setInitStatus(taskId, InitStatus.INACTIVE, { reason: "workspace is gone" });
      }
    }
    // A cleanup holds the task (or claimed it between our read and our write): wait for it to end.
    task = await tasks.get(taskId);
    if (task.cleanupClaimedBy) task = await claims.waitForCleanup(taskId);

    const reinit = await status.beginReinitialization(taskId);
    if (!reinit) throw new TaskBusyError(taskId, (await tasks.get(taskId)).status);
    await turns.start(reinit, message, { initialize: true });
    return reinit;
  }

  /**
   * Stops a running initialization or turn and waits until it has ended
   * STOPPED (its work saved). The runner ends it; only when no process runs
   * it (its server died) is the move made here.
   */
  async stop(taskId: string, reason = "stopped by user"): Promise<TaskRow> {
    const { tasks, status, turns } = this.deps;
    const task = await tasks.get(taskId);
    if (!isBusy(task)) {
      throw new InvalidTransitionError(taskId, "status", task.status, TaskStatus.STOPPED, "nothing is running");
    }
    if (!(await turns.stop(taskId, new StopRequest(reason, true)))) {
      const stopped =
        task.status === TaskStatus.RUNNING
          ? await status.endTurn(taskId, TaskStatus.STOPPED, reason)
          : await status.stopInitialization(taskId, reason);
      if (!stopped) throw new TaskBusyError(taskId, (await tasks.get(taskId)).status);
    }
    return tasks.get(taskId);
  }

  /** Stops what runs, saves the work, destroys the workspace: ARCHIVED / INACTIVE. */
  async archive(taskId: string): Promise<TaskRow> {
    const { tasks, claims, teardown } = this.deps;
    let task = await tasks.get(taskId);
    if (task.cleanupClaimedBy) task = await claims.waitForCleanup(taskId);
    if (task.status === TaskStatus.ARCHIVED) {
      throw new InvalidTransitionError(taskId, "status", task.status, TaskStatus.ARCHIVED, "already archived");
    }
    if (isBusy(task)) await this.stop(taskId, "stopped because the task was archived").catch(() => undefined);
    const archived = await teardown.archive(taskId, "archived by user");
    if (!archived) {
      throw new InvalidTransitionError(taskId, "status", (await tasks.get(taskId)).status, TaskStatus.ARCHIVED);
    }
    return archived;
  }

  /** Stops what runs, destroys the workspace and deletes the task and its branch. */
  async delete(taskId: string): Promise<void> {
    const { tasks, turns, teardown, store } = this.deps;
    const task = await tasks.get(taskId);
    await turns.stop(taskId, new StopRequest("task deleted", true));
    await teardown.destroy(task);
    await tasks.delete(taskId);
    if (task.branch) await store.deleteBranch(task.repoUrl, task.branch);
  }

  /** Restarts initialization and the turn of a task left INITIALIZING / INACTIVE (recovery). */
  resume(task: TaskRow, message: string): Promise<void> {
    return this.deps.turns.start(task, message, { initialize: true, append: false });
  }

  /**
   * Shutdown: refuse new work, stop every running turn (STOPPED with a
   * reason), wait for them to save their work.
   */
  async shutdown(reason = "server shutting down"): Promise<void> {
    this.closing = true;
    await this.deps.turns.stopAll(reason);
  }

  private assertOpen(): void {
    if (this.closing) throw new TaskBusyError("*", "shutting down");
  }
}

function titleFrom(message: string): string {
  const line = message.trim().split("\n")[0]!.trim();
  return line.length > 80 ? `${line.slice(0, 77)}…` : line;
}
