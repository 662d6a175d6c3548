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

export interface TaskCoreOptions {
  db: Db;
  clock: Clock;
  cleanupDelayMs: number;
  log: Logger;
  /** The server process the status store moves as. Default: a new process identity. */
  ownerId?: string;
  /** How long an owner's lease holds without a heartbeat, in ms. Default 30000. */
  ownerLeaseMs?: number;
}

export function createTaskCore(options: TaskCoreOptions): TaskCore {
  const { db, clock, cleanupDelayMs, log, ownerId, ownerLeaseMs } = options;
  const tasks = new TaskRepository(db);
  const changes = new TaskChanges();
  const status = createTaskStatusStore({ db, clock, cleanupDelayMs, onChange: changes.publish, ownerId, ownerLeaseMs });
  const claims = new CleanupClaims({ db, clock, status, tasks, changes, log: log.child({ component: "claims" }) });
  return { tasks, changes, status, claims };
}
