import { QueryClient } from "@tanstack/react-query";
import { describe, expect, it } from "vitest";
import { applyStatusEvent, lacksPreparedWorkspace, mergeTask, queryKeys, storeTask } from "../src/api/queries";
import type { Task } from "../src/api/schemas";
import { searchTasks } from "../src/pages/task-list-page";

const TASK: Task = {
  id: "t1",
  title: "Fix the login form",
  status: "RUNNING",
  initStatus: "ACTIVE",
  mode: "local",
  repoUrl: "https://example.com/acme/web.git",
  baseBranch: "main",
  branch: "umbra/t1",
  baseCommitSha: "abc",
  scheduledCleanupAt: null,
  initializationError: null,
  errorMessage: null,
  lastOutcome: null,
  createdAt: "2030-01-01T00:00:00.000Z",
  updatedAt: "2030-01-01T00:00:10.000Z",
};

describe("the query cache", () => {
  it("keeps the newer of two task snapshots", () => {
    const older = { ...TASK, status: "INITIALIZING" as const, updatedAt: "2030-01-01T00:00:05.000Z" };
    expect(mergeTask(TASK, older)).toBe(TASK);
    const newer = { ...TASK, status: "COMPLETED" as const, updatedAt: "2030-01-01T00:00:20.000Z" };
    expect(mergeTask(TASK, newer).status).toBe("COMPLETED");
  });

  it("folds a status event into the task and ignores one older than what it has", () => {
    const event = {
      taskId: "t1",
      status: "COMPLETED" as const,
      initStatus: "ACTIVE" as const,
      scheduledCleanupAt: null,
      errorMessage: null,
      initializationError: null,
      timestamp: "2030-01-01T00:00:30.000Z",
    };
    expect(applyStatusEvent(TASK, event)).toMatchObject({ status: "COMPLETED", updatedAt: event.timestamp });
    expect(applyStatusEvent(TASK, { ...event, timestamp: "2030-01-01T00:00:01.000Z" })).toBe(TASK);
  });

  it("reads the task again while a status event leaves it without its prepared workspace", () => {
    const opened = {
      ...TASK,
      status: "INITIALIZING" as const,
      initStatus: "PREPARE_WORKSPACE" as const,
      baseCommitSha: null,
    };
    const event = {
      taskId: "t1",
      status: "INITIALIZING" as const,
      initStatus: "INDEX_REPOSITORY" as const,
      scheduledCleanupAt: null,
      errorMessage: null,
      initializationError: null,
      timestamp: "2030-01-01T00:00:30.000Z",
    };
    const after = applyStatusEvent(opened, event);
    expect(after.baseCommitSha).toBeNull();
    expect(lacksPreparedWorkspace(opened, after)).toBe(true);
    expect(
      lacksPreparedWorkspace(opened, applyStatusEvent(opened, { ...event, initStatus: "ACTIVE", status: "RUNNING" })),
    ).toBe(true);
    // Once the snapshot has it, or when nothing moved, no read.
    expect(
      lacksPreparedWorkspace(TASK, applyStatusEvent(TASK, { ...event, status: "COMPLETED", initStatus: "ACTIVE" })),
    ).toBe(false);
    expect(
      lacksPreparedWorkspace(opened, applyStatusEvent(opened, { ...event, initStatus: "PREPARE_WORKSPACE" })),
    ).toBe(false);
  });

  it("writes a snapshot into the task's entry and into the list", () => {
    const client = new QueryClient();
    client.setQueryData(queryKeys.tasks, [TASK, { ...TASK, id: "t2" }]);
    storeTask(client, { ...TASK, status: "COMPLETED", updatedAt: "2030-01-01T00:01:00.000Z" });
    expect(client.getQueryData<Task>(queryKeys.task("t1"))?.status).toBe("COMPLETED");
    expect(client.getQueryData<Task[]>(queryKeys.tasks)?.map((t) => t.status)).toEqual(["COMPLETED", "RUNNING"]);
  });
});

describe("searching the task list", () => {
  it("matches every word against title, repository, branch and id, ignoring case", () => {
    const other = { ...TASK, id: "t2", title: "Add dark mode", repoUrl: "/srv/api", branch: "umbra/t2" };
    expect(searchTasks([TASK, other], "login acme").map((t) => t.id)).toEqual(["t1"]);
    expect(searchTasks([TASK, other], "UMBRA/T2").map((t) => t.id)).toEqual(["t2"]);
    expect(searchTasks([TASK, other], "  ").map((t) => t.id)).toEqual(["t1", "t2"]);
    expect(searchTasks([TASK, other], "nothing")).toEqual([]);
  });
});
