/**
 * Local mode: a task's workspace is a git worktree of the repository store
 * under `<DATA_DIR>/workspaces/<task-id>`, on the task branch. The worktree
 * shares the store's objects and refs, so a save moves nothing: it puts
 * whatever the agent left onto the task branch (saveWorkspace, the same
 * algorithm the sidecar runs) and records the result as the branch's last
 * saved commit. A save that cannot complete is one WorkspaceSaveError.
 * The agent's state directory is used where it is
 * (DATA_DIR/agent-state/<task-id>, beside the workspaces). Commands get a
 * home of their own, `<DATA_DIR>/workspaces/.homes/<task-id>`, outside the
 * worktree (nothing of it is committed) and removed with it.
 */
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { TaskRow } from "@repo/db";
import { InitStatus } from "@repo/types";
import {
  LocalExecutor,
  type SavedWorkspace,
  SaveRefusedError,
  saveWorkspace,
  type ToolExecutor,
} from "@repo/workspace";
import { errorMessage, WorkspaceError, WorkspaceSaveError } from "../../errors";
import type { Logger } from "../../logger";
import { RepositoryStore } from "../../repository/repository-store";
import type { AgentStateDirs } from "../agent-state";
import { resolveTaskBase } from "../task-branch";
import type { StepContext, WorkspaceManager } from "../types";

export class LocalWorkspaceManager implements WorkspaceManager {
  readonly mode = "local" as const;

  constructor(
    private readonly store: RepositoryStore,
    private readonly workspacesDir: string,
    private readonly agentState: AgentStateDirs,
    /** Where saves are logged (`workspace.saved`). Default: nowhere. */
    private readonly log?: Logger,
  ) {}

  workspacePath(taskId: string): string {
    return join(this.workspacesDir, taskId);
  }

  /** The HOME of the task's commands (dotfiles, tool caches); made on first use. */
  private homePath(taskId: string): string {
    return join(this.workspacesDir, ".homes", taskId);
  }

  async runStep(step: InitStatus, { task, signal }: StepContext) {
    if (step !== InitStatus.PREPARE_WORKSPACE) {
      throw new WorkspaceError(`local workspaces have no ${step} step`, step, false);
    }
    const base = await resolveTaskBase(this.store, task, signal);
    const path = this.workspacePath(task.id);
    await this.store.addWorktree(task.repoUrl, base.branch, path, base.baseCommitSha);
    return { ...base.patch, workspacePath: path };
  }

  agentHome(task: TaskRow): Promise<string> {
    return this.agentState.ensure(task.id);
  }

  async executor(task: TaskRow): Promise<ToolExecutor> {
    if (!task.workspacePath || !existsSync(task.workspacePath)) {
      throw new WorkspaceError(`task ${task.id} has no workspace`, null, true);
    }
    return new LocalExecutor(task.workspacePath, { home: this.homePath(task.id) });
  }

  async attach(task: TaskRow): Promise<ToolExecutor | null> {
    return (await this.isAlive(task)) ? new LocalExecutor(task.workspacePath!, { home: this.homePath(task.id) }) : null;
  }

  async saveWork(task: TaskRow, message: string): Promise<string> {
    const path = task.workspacePath;
    if (!path || !existsSync(path)) {
      throw new WorkspaceSaveError("WORKSPACE_MISSING", `task ${task.id} has no workspace to save from`);
    }
    const started = performance.now();
    try {
      const saved = await this.saveOnto(task, path, message);
      this.log?.info(
        {
          taskId: task.id,
          head: saved.head,
          base: saved.base,
          committed: saved.committed,
          rewritten: saved.rewritten,
          previousBranch: saved.previous.branch,
          ms: Math.round(performance.now() - started),
        },
        "workspace.saved",
      );
      return saved.head;
    } catch (error) {
      if (error instanceof SaveRefusedError) {
        throw new WorkspaceSaveError("WORKSPACE_BROKEN", `the workspace cannot be saved: ${error.message}`, {
          cause: error,
        });
      }
      throw new WorkspaceSaveError("STORE_FAILED", `saving the workspace failed: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }

  /**
   * The worktree shares the mirror's refs, so the saved-head record names the
   * base and moves with the branch in one update. A branch saved before there
   * were records has none yet: its base is then the store's saved head.
   */
  private async saveOnto(task: TaskRow, path: string, message: string): Promise<SavedWorkspace> {
    const branch = task.branch!;
    const recordIn = RepositoryStore.savedRef(branch);
    try {
      return await saveWorkspace(path, { branch, base: recordIn, message, recordIn });
    } catch (error) {
      if (!(error instanceof SaveRefusedError && error.code === "BASE_MISSING")) throw error;
      const base = await this.store.savedHead(task.repoUrl, branch);
      return saveWorkspace(path, { branch, base, message, recordIn });
    }
  }

  async fastForward(task: TaskRow, sha: string): Promise<void> {
    if (!task.workspacePath || !task.branch) throw new WorkspaceError(`task ${task.id} has no workspace`, null, true);
    await this.store.fastForwardWorktree(task.repoUrl, task.workspacePath, task.branch, sha);
  }

  async teardown(task: TaskRow): Promise<void> {
    await this.store.removeWorktree(task.repoUrl, task.workspacePath ?? this.workspacePath(task.id));
    await rm(this.homePath(task.id), { recursive: true, force: true });
  }

  async isAlive(task: TaskRow): Promise<boolean> {
    return task.workspacePath !== null && existsSync(join(task.workspacePath, ".git"));
  }
}
