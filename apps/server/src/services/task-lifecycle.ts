/**
 * The task lifecycle (SPEC §2): create, follow-up, stop, archive, delete.
 * Routes and socket handlers call these; nothing here knows about HTTP.
 *
 * Background work (an initialization followed by a turn) is tracked per task
 * with an AbortController, so stop, archive, delete and shutdown can end it
 * and wait for it. Status moves all go through the status store's guarded
 * compare-and-set, so two racing requests can never both win: the loser gets
 * TaskBusyError.
 */
import { randomUUID } from "node:crypto";
import { type Db, type TaskRow, tasks } from "@repo/db";
import { type CreateTaskBody, InitStatus, isBusy, TaskStatus } from "@repo/types";
import { desc, eq } from "drizzle-orm";
import { errorMessage, InvalidTransitionError, NotFoundError, TaskBusyError } from "../errors";
import type { WorkspaceManager } from "../execution/types";
import type { TaskInitializationEngine } from "../initialization";
import type { Logger } from "../logger";
import { RepositoryStore } from "../repository/repository-store";
import { DB_READ_RETRY_DEADLINE_MS, retryTransient } from "../utils/db-retry";
import type { TaskStatusStore } from "../utils/task-status";
import type { MessageLog } from "./message-log";
import type { TurnRunner } from "./turn-runner";
import type { WorkspaceTeardown } from "./workspace-teardown";

export interface TaskLifecycleDeps {
  db: Db;
  status: TaskStatusStore;
  engine: TaskInitializationEngine;
  turns: TurnRunner;
  messages: MessageLog;
  workspaces: WorkspaceManager;
  teardown: WorkspaceTeardown;
  store: RepositoryStore;
  log: Logger;
}

interface ActiveWork {
  controller: AbortController;
  done: Promise<void>;
}

export class TaskLifecycle {
  private readonly active = new Map<string, ActiveWork>();
  private closing = false;

  constructor(private readonly deps: TaskLifecycleDeps) {}

  async get(taskId: string): Promise<TaskRow> {
    const [row] = await readRetrying(() => this.deps.db.select().from(tasks).where(eq(tasks.id, taskId)));
    if (!row) throw new NotFoundError("task", taskId);
    return row;
  }

  list(): Promise<TaskRow[]> {
    return readRetrying(() => this.deps.db.select().from(tasks).orderBy(desc(tasks.createdAt), desc(tasks.id)));
  }

  /** Creates the task (INITIALIZING / INACTIVE) and starts initializing it at once. */
  async create(body: CreateTaskBody): Promise<TaskRow> {
    const id = randomUUID();
    const task = await this.deps.status.createTask({
      id,
      title: body.title ?? titleFrom(body.message),
      mode: this.deps.workspaces.mode,
      repoUrl: body.repoUrl,
      baseBranch: body.baseBranch ?? null,
      branch: RepositoryStore.branchFor(id),
    });
    await this.deps.messages.append(id, "user", body.message);
    this.startInBackground(id, body.message, true);
    return task;
  }

  /**
   * A follow-up message. On a warm workspace the agent starts at once (the
   * cleanup is cancelled in the same write); otherwise the task re-initializes
   * first. Busy tasks are refused with TaskBusyError.
   */
  async followUp(taskId: string, message: string): Promise<TaskRow> {
    this.assertOpen();
    let task = await this.get(taskId);
    if (isBusy(task) || this.active.has(taskId)) throw new TaskBusyError(taskId, task.status);

    if (task.initStatus === InitStatus.ACTIVE) {
      if (task.cleanupClaimedBy) {
        task = await this.deps.teardown.waitForCleanup(taskId);
      } else if (!(await this.deps.workspaces.isAlive(task))) {
        this.deps.log.warn({ taskId }, "followup.workspace.dead");
        task = await this.deps.status.setInitStatus(taskId, InitStatus.INACTIVE, { reason: "workspace is gone" });
      } else {
        const warm = await this.claim(taskId, () =>
          this.deps.status.setTaskStatus(taskId, TaskStatus.RUNNING, {
            requireUnclaimed: true,
            reason: "follow-up on a warm workspace",
            patch: { errorMessage: null, initializationError: null },
          }),
        );
        if (warm) {
          await this.deps.messages.append(taskId, "user", message);
          this.startInBackground(taskId, message, false);
          return warm;
        }
        // Cleanup claimed the task between our read and our write: wait for it, then re-initialize.
        task = await this.deps.teardown.waitForCleanup(taskId);
      }
    }

    const reinit = await this.claim(taskId, () =>
      this.deps.status.setTaskStatus(taskId, TaskStatus.INITIALIZING, {
        reason: "follow-up re-initializes the workspace",
        patch: { errorMessage: null, initializationError: null },
      }),
    );
    if (!reinit) throw new TaskBusyError(taskId, (await this.get(taskId)).status);
    await this.deps.messages.append(taskId, "user", message);
    this.startInBackground(taskId, message, true);
    return reinit;
  }

  /** Stops a running initialization or turn (STOPPED) and waits for it to unwind. */
  async stop(taskId: string, reason = "stopped by user"): Promise<TaskRow> {
    const task = await this.get(taskId);
    if (task.status !== TaskStatus.RUNNING && task.status !== TaskStatus.INITIALIZING) {
      throw new InvalidTransitionError(taskId, "status", task.status, TaskStatus.STOPPED, "nothing is running");
    }
    await this.deps.status.setTaskStatus(taskId, TaskStatus.STOPPED, { reason, patch: { errorMessage: reason } });
    await this.abortAndWait(taskId, reason);
    return this.get(taskId);
  }

  /** Stops what runs, saves the work, destroys the workspace: ARCHIVED / INACTIVE. */
  async archive(taskId: string): Promise<TaskRow> {
    let task = await this.get(taskId);
    if (task.cleanupClaimedBy) task = await this.deps.teardown.waitForCleanup(taskId);
    if (task.status === TaskStatus.ARCHIVED) {
      throw new InvalidTransitionError(taskId, "status", task.status, TaskStatus.ARCHIVED, "already archived");
    }
    if (isBusy(task)) {
      task = await this.stop(taskId, "stopped because the task was archived").catch(() => this.get(taskId));
    }
    await this.abortAndWait(taskId, "archived");
    return this.deps.teardown.archive(taskId, "archived by user");
  }

  /** Stops what runs, destroys the workspace and deletes the task and its branch. */
  async delete(taskId: string): Promise<void> {
    const task = await this.get(taskId);
    await this.abortAndWait(taskId, "task deleted");
    await this.deps.teardown.destroy(task);
    await this.deps.db.delete(tasks).where(eq(tasks.id, taskId));
    if (task.branch) await this.deps.store.deleteBranch(task.repoUrl, task.branch);
  }

  /** Restarts initialization and a turn for a task that is already INITIALIZING (start-up recovery). */
  resume(taskId: string, message: string): void {
    this.startInBackground(taskId, message, true);
  }

  /** True while this process runs an initialization or a turn for the task. */
  isActive(taskId: string): boolean {
    return this.active.has(taskId);
  }

  /**
   * Shutdown: refuse new work, stop every running turn (STOPPED with a
   * reason), wait for them to save their work.
   */
  async shutdown(reason = "server shutting down"): Promise<void> {
    this.closing = true;
    await Promise.all([...this.active.keys()].map((taskId) => this.abortAndWait(taskId, reason)));
  }

  private assertOpen(): void {
    if (this.closing) throw new TaskBusyError("*", "shutting down");
  }

  /** Runs a status write that races other requests; a lost race returns null. */
  private async claim(taskId: string, write: () => Promise<TaskRow>): Promise<TaskRow | null> {
    try {
      return await write();
    } catch (error) {
      if (error instanceof InvalidTransitionError) {
        this.deps.log.info({ taskId, reason: error.message }, "followup.race.lost");
        return null;
      }
      throw error;
    }
  }

  private async abortAndWait(taskId: string, reason: string): Promise<void> {
    const work = this.active.get(taskId);
    if (!work) return;
    work.controller.abort(new Error(reason));
    await work.done;
  }

  /** Initialization (when needed) and then one agent turn, in the background. */
  private startInBackground(taskId: string, message: string, initialize: boolean): void {
    const controller = new AbortController();
    const log = this.deps.log.child({ taskId });
    const done = (async () => {
      const { engine, status, turns } = this.deps;
      let task: TaskRow;
      if (initialize) {
        try {
          await engine.initialize(taskId, controller.signal);
        } catch {
          return; // recorded on the task by the engine
        }
        try {
          task = await status.setTaskStatus(taskId, TaskStatus.RUNNING, { reason: "initialization reached ACTIVE" });
        } catch (error) {
          log.info({ err: errorMessage(error) }, "run.start.skipped");
          return;
        }
      } else {
        task = await this.get(taskId);
      }
      await turns.run(task, message, controller.signal);
    })()
      .catch((error) => log.error({ err: error }, "run.crashed"))
      .finally(() => {
        if (this.active.get(taskId)?.controller === controller) this.active.delete(taskId);
      });
    this.active.set(taskId, { controller, done });
  }
}

/** Reads step over a connection the database dropped (see db-retry.ts). */
function readRetrying<T>(read: () => Promise<T>): Promise<T> {
  return retryTransient(read, { deadlineMs: DB_READ_RETRY_DEADLINE_MS });
}

function titleFrom(message: string): string {
  const line = message.trim().split("\n")[0]!.trim();
  return line.length > 80 ? `${line.slice(0, 77)}…` : line;
}
