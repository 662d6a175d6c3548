import type { TaskDto, TaskStatusUpdateEvent } from "@repo/types";
import { describe, expect, it } from "vitest";
import { taskDto } from "../../../test/support/task-dto";
import { INITIAL_STATE, isReinitializing, type TaskLiveState, taskLiveReducer } from "../src/task-live-state";

const BASE: TaskDto = taskDto({ status: "INITIALIZING", initStatus: "INACTIVE", mode: "remote" });

function at(second: number): string {
  return new Date(Date.UTC(2030, 0, 1, 0, 0, second)).toISOString();
}

function event(status: TaskDto["status"], initStatus: TaskDto["initStatus"], second: number): TaskStatusUpdateEvent {
  return {
    taskId: "t1",
    status,
    initStatus,
    scheduledCleanupAt: null,
    errorMessage: null,
    initializationError: null,
    timestamp: at(second),
  };
}

function run(...steps: Parameters<typeof taskLiveReducer>[1][]): TaskLiveState {
  return steps.reduce(taskLiveReducer, INITIAL_STATE);
}

describe("task page state", () => {
  it("applies status events in order", () => {
    const state = run(
      { type: "task", task: BASE },
      { type: "status-event", event: event("INITIALIZING", "CREATE_VM", 1) },
      { type: "status-event", event: event("INITIALIZING", "ACTIVE", 2) },
      { type: "status-event", event: event("RUNNING", "ACTIVE", 3) },
    );
    expect(state.task).toMatchObject({ status: "RUNNING", initStatus: "ACTIVE", updatedAt: at(3) });
  });

  it("ignores a fetched task older than an event already applied, and an event older than a fetched task", () => {
    const afterEvent = run(
      { type: "task", task: BASE },
      { type: "status-event", event: event("RUNNING", "ACTIVE", 5) },
      { type: "task", task: { ...BASE, status: "INITIALIZING", initStatus: "CREATE_VM", updatedAt: at(2) } },
    );
    expect(afterEvent.task?.status).toBe("RUNNING");

    const afterFetch = run(
      { type: "task", task: { ...BASE, status: "COMPLETED", initStatus: "ACTIVE", updatedAt: at(9) } },
      { type: "status-event", event: event("RUNNING", "ACTIVE", 4) },
    );
    expect(afterFetch.task?.status).toBe("COMPLETED");
  });

  it("does not call a first initialization a re-initialization, not even a retry after it failed", () => {
    const state = run(
      { type: "task", task: BASE },
      { type: "status-event", event: { ...event("FAILED", "INACTIVE", 1), initializationError: "CREATE_VM: x" } },
      { type: "status-event", event: event("INITIALIZING", "INACTIVE", 2) },
    );
    expect(isReinitializing(state)).toBe(false);
  });

  it("calls provisioning after the task had a workspace a re-initialization", () => {
    const state = run(
      { type: "task", task: { ...BASE, status: "COMPLETED", initStatus: "ACTIVE" } },
      { type: "status-event", event: event("ARCHIVED", "INACTIVE", 1) },
      { type: "status-event", event: event("INITIALIZING", "INACTIVE", 2) },
      { type: "status-event", event: event("INITIALIZING", "CREATE_VM", 3) },
    );
    expect(isReinitializing(state)).toBe(true);
  });

  it("recognises a re-initialization after a reload from the agent's earlier messages", () => {
    const state = run(
      { type: "task", task: { ...BASE, status: "INITIALIZING", initStatus: "WAIT_VM_READY" } },
      {
        type: "messages",
        turnOver: false,
        messages: [
          { id: "m1", role: "user", content: "go", sequence: 1, createdAt: at(0) },
          { id: "m2", role: "assistant", content: "done", sequence: 2, createdAt: at(1) },
        ],
      },
    );
    expect(isReinitializing(state)).toBe(true);
  });

  it("starts fresh step progress when a new initialization begins", () => {
    const state = run(
      { type: "task", task: { ...BASE, status: "FAILED", initStatus: "INACTIVE" } },
      {
        type: "init-progress",
        event: { taskId: "t1", type: "init-error", currentStep: "CREATE_VM", totalSteps: 4, error: "boom" },
      },
      { type: "status-event", event: event("INITIALIZING", "INACTIVE", 2) },
    );
    expect(state.progress).toEqual({ current: null, completed: [], failedStep: null, error: null });
  });
});
