/**
 * Local mode: a task's workspace is a git worktree of the repository store
 * under `<DATA_DIR>/workspaces/<task-id>`, on the task branch. Because the
 * worktree shares the store's objects and refs, a commit in the workspace is
 * saved in the store the moment it is made. The agent's state directory is
 * used where it is (DATA_DIR/agent-state/<task-id>, beside the workspaces).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { TaskRow } from "@repo/db";
import { InitStatus } from "@repo/types";
import { LocalExecutor, type ToolExecutor } from "@repo/workspace";
import { WorkspaceError } from "../../errors";
import type { RepositoryStore } from "../../repository/repository-store";
import type { AgentStateDirs } from "../agent-state";
import { resolveTaskBase } from "../task-branch";
import type { StepContext, WorkspaceManager } from "../types";

export class LocalWorkspaceManager implements WorkspaceManager {
  readonly mode = "local" as const;

  constructor(
    private readonly store: RepositoryStore,
    private readonly workspacesDir: string,
    private readonly agentState: AgentStateDirs,
  ) {}

  workspacePath(taskId: string): string {
    return join(this.workspacesDir, taskId);
  }

  async runStep(step: InitStatus, { task }: StepContext) {
    if (step !== InitStatus.PREPARE_WORKSPACE) {
      throw new WorkspaceError(`local workspaces have no ${step} step`, step, false);
    }
    const base = await resolveTaskBase(this.store, task);
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
    return new LocalExecutor(task.workspacePath);
  }

  async attach(task: TaskRow): Promise<ToolExecutor | null> {
    return (await this.isAlive(task)) ? new LocalExecutor(task.workspacePath!) : null;
  }

  async saveWork(task: TaskRow, message: string): Promise<string> {
    const executor = await this.executor(task);
    const { sha } = await executor.commitAll(message);
    return sha;
  }

  async fastForward(task: TaskRow, sha: string): Promise<void> {
    if (!task.workspacePath || !task.branch) throw new WorkspaceError(`task ${task.id} has no workspace`, null, true);
    await this.store.fastForwardWorktree(task.repoUrl, task.workspacePath, task.branch, sha);
  }

  async teardown(task: TaskRow): Promise<void> {
    await this.store.removeWorktree(task.repoUrl, task.workspacePath ?? this.workspacePath(task.id));
  }

  async isAlive(task: TaskRow): Promise<boolean> {
    return task.workspacePath !== null && existsSync(join(task.workspacePath, ".git"));
  }
}
