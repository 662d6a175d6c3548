/**
 * Read-only repository routes for the new-task form and the task page:
 * - GET /api/repositories/branches?repoUrl= — the branch picker: the
 *   repository's branches and its default, read through the repository store
 *   (the mirror is fetched first, so a branch pushed a moment ago is listed);
 * - GET /api/tasks/:id/files?path= — the file browser: a directory listing or
 *   a file's text from the task branch as saved in the store after each turn.
 *
 * Thin like the task routes: parse, ask the store, shape the answer. A
 * repository URL passes the same policy as at task creation before the server
 * fetches it (no private addresses, no local paths unless allowed). Neither
 * route changes anything; a repository that cannot be fetched is bad input
 * (400 with git's reason), never a 500.
 */
import { BranchesQuerySchema, TaskFilesQuerySchema, TaskIdSchema } from "@repo/types";
import type { FastifyInstance } from "fastify";
import { NotFoundError, ValidationError, WorkspaceError } from "../errors";
import { isTreePath, type RepositoryStore } from "../repository/repository-store";
import type { RepoUrlPolicy } from "../security/repo-url-policy";
import type { TaskRepository } from "../services/task-repository";
import { parseBody } from "./tasks";

export interface RepositoryRouteDeps {
  tasks: Pick<TaskRepository, "get">;
  store: RepositoryStore;
  /** The same check as task creation: listing branches fetches the repository from the server. */
  repoUrls: RepoUrlPolicy;
}

/** A task id from the path; one that is not a UUID cannot name a task. */
function taskIdFrom(params: unknown): string {
  const id = (params as { id?: string }).id ?? "";
  if (!TaskIdSchema.safeParse(id).success) throw new NotFoundError("task", id);
  return id;
}

export function registerRepositoryRoutes(app: FastifyInstance, { tasks, store, repoUrls }: RepositoryRouteDeps): void {
  app.get("/api/repositories/branches", async (request) => {
    const { repoUrl } = parseBody(BranchesQuerySchema, request.query);
    await repoUrls.check(repoUrl);
    try {
      return await store.listBranches(repoUrl);
    } catch (error) {
      if (error instanceof WorkspaceError) throw new ValidationError(error.message, { cause: error });
      throw error;
    }
  });

  app.get("/api/tasks/:id/files", async (request) => {
    const task = await tasks.get(taskIdFrom(request.params));
    const { path: raw } = parseBody(TaskFilesQuerySchema, request.query);
    const path = raw.replace(/^\/+|\/+$/g, "");
    if (!isTreePath(path)) throw new ValidationError("path must be a relative path inside the repository");
    if (!task.branch || !(await store.hasBranch(task.repoUrl, task.branch))) {
      throw new NotFoundError("task branch", task.branch ?? task.id);
    }
    const commit = await store.branchHead(task.repoUrl, task.branch);
    const entry = await store.readTreeEntry(task.repoUrl, commit, path);
    if (!entry) throw new NotFoundError("path", path || "/");
    return { ...entry, commit };
  });
}
