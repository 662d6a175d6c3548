/**
 * Runs one piece of work on a task (its creation or a follow-up) on a server
 * whose first provisioning step is held (holdFirstStep), joining the task's
 * room while it is held, so that every event of the run is recorded — the
 * setup log included — then waits for the turn to end.
 */
import type { TaskDto } from "@repo/types";
import { expect } from "vitest";
import type { Gate } from "./lifecycle";
import { EventRecorder, type TestServer } from "./server";

export interface RecordedRun {
  /** The task once its turn ended. */
  task: TaskDto;
  /** The agent's stdout in this run. */
  output: string;
  /** The INSTALL_DEPENDENCIES log of this run (`step-log` progress). */
  setupLog: string;
}

/** `start` creates a task or sends a follow-up that re-initializes; the run must end COMPLETED. */
export async function recordRun(t: TestServer, arm: () => Gate, start: () => Promise<TaskDto>): Promise<RecordedRun> {
  const gate = arm();
  const started = await start();
  await gate.reached;
  const recorder = new EventRecorder(t.url);
  try {
    await recorder.join(started.id);
    gate.open();
    await recorder.waitFor(
      (e) => e.name === "task-status-update" && (e.payload.status === "COMPLETED" || e.payload.status === "FAILED"),
      60_000,
    );
    const task = (await t.api<{ task: TaskDto }>("GET", `/api/tasks/${started.id}`)).body.task;
    expect([task.status, task.errorMessage]).toEqual(["COMPLETED", null]);
    const output = recorder.events
      .flatMap((e) => (e.name === "stream-chunk" && e.payload.type === "stdout" ? [e.payload.text] : []))
      .join("");
    const setupLog = recorder.events
      .flatMap((e) => (e.name === "init-progress" && e.payload.type === "step-log" ? [e.payload.log ?? ""] : []))
      .join("");
    return { task, output, setupLog };
  } finally {
    recorder.close();
  }
}
