/**
 * Where a task's branch starts. The first initialization fetches the
 * repository and resolves the base branch to a commit; later ones reuse the
 * recorded base and the branch already saved in the repository store.
 */
import type { TaskRow } from "@repo/db";
import { RepositoryStore } from "../repository/repository-store";
import type { TaskFieldsPatch } from "../utils/task-status";

export interface TaskBase {
  branch: string;
  baseBranch: string;
  baseCommitSha: string;
  /** What the task fields should be updated with (empty when nothing changed). */
  patch: TaskFieldsPatch;
}

/** `signal` ends a fetch from the repository's remote that is still running (the initialization was stopped). */
export async function resolveTaskBase(store: RepositoryStore, task: TaskRow, signal?: AbortSignal): Promise<TaskBase> {
  const branch = task.branch ?? RepositoryStore.branchFor(task.id);
  if (task.baseCommitSha && task.baseBranch && (await store.hasBranch(task.repoUrl, branch))) {
    return { branch, baseBranch: task.baseBranch, baseCommitSha: task.baseCommitSha, patch: {} };
  }
  const base = await store.prepareBase(task.repoUrl, task.baseBranch, signal);
  const baseCommitSha = task.baseCommitSha ?? base.baseCommitSha;
  return {
    branch,
    baseBranch: base.baseBranch,
    baseCommitSha,
    patch: { branch, baseBranch: base.baseBranch, baseCommitSha },
  };
}
