/**
 * The data layer: TanStack Query caches every resource of the API under one
 * key, and socket events write into that cache (see live-sync.ts) instead of
 * causing refetches. Invariants:
 * - one fetch per resource per change: task-scoped data never goes stale by
 *   time (staleTime Infinity); it is refetched only when an event says it
 *   changed (a turn ended, a follow-up started) or after a reconnect;
 * - a task snapshot only ever replaces an older one (`mergeTask`), whether
 *   it came from a fetch, an answer to an action or a status event;
 * - the task list stays cached across navigation and refreshes on a timer,
 *   because the server pushes events only to task rooms.
 */
import { isBusy, type TaskStatusUpdateEvent } from "@repo/types";
import { QueryClient, type QueryKey, useQuery } from "@tanstack/react-query";
import { api } from ".";
import { ApiError } from "./client";
import type { Task } from "./schemas";

export const queryKeys = {
  config: ["config"] as const,
  tasks: ["tasks"] as const,
  task: (id: string) => ["task", id] as const,
  messages: (id: string) => ["messages", id] as const,
  diff: (id: string) => ["diff", id] as const,
  files: (id: string, path: string) => ["files", id, path] as const,
  filesOf: (id: string) => ["files", id] as const,
  branches: (repoUrl: string) => ["branches", repoUrl] as const,
};

/** How often the task list refreshes, ms. */
export const TASK_LIST_REFRESH_MS = 4_000;

function retry(failures: number, error: unknown): boolean {
  // A refusal (4xx) will not change by asking again; a network error or a 5xx might.
  if (error instanceof ApiError && error.status >= 400 && error.status < 500) return false;
  return failures < 2;
}

export function createQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: { retry, refetchOnWindowFocus: false, staleTime: Number.POSITIVE_INFINITY },
    },
  });
}

function time(iso: string): number {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : t;
}

/** The newer of two snapshots of a task; `next` wins a tie (an action's answer is at least as fresh). */
export function mergeTask(current: Task | undefined, next: Task): Task {
  if (current && current.id === next.id && time(next.updatedAt) < time(current.updatedAt)) return current;
  return current ? { ...current, ...next } : next;
}

/** A status event as a task snapshot on top of the one the cache has. */
export function applyStatusEvent(current: Task, event: TaskStatusUpdateEvent): Task {
  return mergeTask(current, {
    ...current,
    status: event.status,
    initStatus: event.initStatus,
    scheduledCleanupAt: event.scheduledCleanupAt,
    errorMessage: event.errorMessage,
    initializationError:
      event.initializationError !== undefined ? event.initializationError : current.initializationError,
    updatedAt: event.timestamp,
  });
}

/**
 * Whether a status event left the snapshot short of what only a full read
 * has: the base commit (and with it the Files tab) is set while the workspace
 * is first prepared, and status events do not carry it. A page opened before
 * that reads the task again at each step until it has it.
 */
export function lacksPreparedWorkspace(before: Task, after: Task): boolean {
  return after.baseCommitSha === null && after.initStatus !== before.initStatus;
}

/** Writes a task snapshot into the task's own entry and into the list. */
export function storeTask(client: QueryClient, task: Task): void {
  client.setQueryData<Task>(queryKeys.task(task.id), (current) => mergeTask(current, task));
  client.setQueryData<Task[]>(queryKeys.tasks, (list) =>
    list?.map((item) => (item.id === task.id ? mergeTask(item, task) : item)),
  );
}

/** Forgets everything about a deleted task. */
export function forgetTask(client: QueryClient, taskId: string): void {
  for (const key of [queryKeys.task(taskId), queryKeys.messages(taskId), queryKeys.diff(taskId)] as QueryKey[]) {
    client.removeQueries({ queryKey: key });
  }
  client.removeQueries({ queryKey: queryKeys.filesOf(taskId) });
  client.setQueryData<Task[]>(queryKeys.tasks, (list) => list?.filter((item) => item.id !== taskId));
}

/** Marks what a finished turn changed: the conversation, the diff and the files. */
export function invalidateTurnResults(client: QueryClient, taskId: string): void {
  void client.invalidateQueries({ queryKey: queryKeys.messages(taskId) });
  void client.invalidateQueries({ queryKey: queryKeys.diff(taskId) });
  void client.invalidateQueries({ queryKey: queryKeys.filesOf(taskId) });
}

export function useConfigQuery() {
  return useQuery({
    queryKey: queryKeys.config,
    queryFn: api.getConfig,
    // The server may still be starting or want a token: keep asking.
    retry: true,
    retryDelay: 3_000,
  });
}

export function useTasksQuery() {
  return useQuery({
    queryKey: queryKeys.tasks,
    queryFn: api.listTasks,
    staleTime: 0,
    refetchInterval: TASK_LIST_REFRESH_MS,
    refetchOnWindowFocus: true,
  });
}

export function useTaskQuery(taskId: string) {
  return useQuery({ queryKey: queryKeys.task(taskId), queryFn: () => api.getTask(taskId) });
}

export function useMessagesQuery(taskId: string) {
  return useQuery({ queryKey: queryKeys.messages(taskId), queryFn: () => api.getMessages(taskId) });
}

export function useDiffQuery(taskId: string, enabled = true) {
  return useQuery({ queryKey: queryKeys.diff(taskId), queryFn: () => api.getDiff(taskId), enabled });
}

export function useFilesQuery(taskId: string, path: string, enabled: boolean) {
  return useQuery({
    queryKey: queryKeys.files(taskId, path),
    queryFn: () => api.getFiles(taskId, path),
    enabled,
  });
}

/** The branches of a repository for the branch picker; null repoUrl = nothing to ask. */
export function useBranchesQuery(repoUrl: string | null) {
  return useQuery({
    queryKey: queryKeys.branches(repoUrl ?? ""),
    queryFn: () => api.listBranches(repoUrl ?? ""),
    enabled: repoUrl !== null,
    staleTime: 60_000,
  });
}

/** A turn ended (or an initialization ended without one) between these two snapshots. */
export function turnEnded(before: Pick<Task, "status" | "initStatus">, after: Pick<Task, "status" | "initStatus">) {
  return isBusy(before) && !isBusy(after);
}
