/**
 * Puts a task into a lifecycle state through the status store's own named
 * moves, the way the server gets there, for tests that start from a state.
 */
import { randomUUID } from "node:crypto";
import type { TaskRow } from "@repo/db";
import { getStepsForMode, InitStatus, type TaskMode } from "@repo/types";
import type { TaskStatusStore } from "../../apps/server/src/utils/task-status";

function present(row: TaskRow | null, what: string): TaskRow {
  if (!row) throw new Error(`test setup: ${what} was refused`);
  return row;
}

/** A new task: INITIALIZING / INACTIVE. */
export function newTask(status: TaskStatusStore, mode: TaskMode = "remote", repoUrl = "/r"): Promise<TaskRow> {
  return status.createTask({ id: randomUUID(), title: "t", mode, repoUrl });
}

/** Walks an INITIALIZING task's steps in its mode's order up to ACTIVE. */
export async function walkToActive(status: TaskStatusStore, task: TaskRow): Promise<TaskRow> {
  let row = task;
  for (const step of [...getStepsForMode(task.mode), InitStatus.ACTIVE]) {
    row = present(await status.setInitStatus(task.id, step), `initStatus ${step}`);
  }
  return row;
}

/** A task RUNNING its first turn on an ACTIVE workspace. */
export async function runningTask(status: TaskStatusStore, mode: TaskMode = "remote"): Promise<TaskRow> {
  const task = await walkToActive(status, await newTask(status, mode));
  return present(await status.startTurn(task.id), "startTurn");
}

/**
 * A task whose turn COMPLETED on a warm workspace; for a remote task the
 * cleanup is due `delayMinutes` from now (the store's delay when omitted).
 */
export async function warmTask(status: TaskStatusStore, delayMinutes?: number, mode: TaskMode = "remote") {
  const task = await runningTask(status, mode);
  const ended = present(await status.endTurn(task.id, "COMPLETED", null), "endTurn");
  if (delayMinutes === undefined) return ended;
  return present(await status.scheduleTaskCleanup(task.id, delayMinutes), "scheduleTaskCleanup");
}
