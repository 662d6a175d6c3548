/**
 * The core every lifecycle service shares, wired in one place: the task
 * repository, the feed of committed changes, the status store publishing to
 * it, and the cleanup claims. The server builds it once (app.ts); tests that
 * drive a service on its own build the same thing.
 */
import type { Db } from "@repo/db";
import type { Logger } from "../logger";
import type { Clock } from "../utils/clock";
import { TaskChanges } from "../utils/task-changes";
import { createTaskStatusStore, type TaskStatusStore } from "../utils/task-status";
import { CleanupClaims } from "./cleanup-claims";
import { TaskRepository } from "./task-repository";

export interface TaskCore {
  tasks: TaskRepository;
  changes: TaskChanges;
  status: TaskStatusStore;
  claims: CleanupClaims;
}

export function createTaskCore(options: { db: Db; clock: Clock; cleanupDelayMs: number; log: Logger }): TaskCore {
  const { db, clock, cleanupDelayMs, log } = options;
  const tasks = new TaskRepository(db);
  const changes = new TaskChanges();
  const status = createTaskStatusStore({ db, clock, cleanupDelayMs, onChange: changes.publish });
  const claims = new CleanupClaims({ db, clock, status, tasks, changes, log: log.child({ component: "claims" }) });
  return { tasks, changes, status, claims };
}
