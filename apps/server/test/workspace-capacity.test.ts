/**
 * The cap on live workspaces, in remote mode with real sandboxes (PGlite and
 * Postgres): at the cap a new task cleans the least recently used warm
 * workspace up early (its work saved), and when every live workspace is busy
 * a request is refused with 429 CAPACITY and Retry-After — it never waits in
 * silence. The cap is shown in /api/config and /metrics.
 */
import type { DiffResponse, ErrorBody, TaskDto } from "@repo/types";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { createRepo } from "../../../test/support/git";
import { EventRecorder, startTestServer, type TestServer } from "../../../test/support/server";

const targets = await databaseTargets();

type TaskBody = { task: TaskDto };

describe.each(targets)("workspace capacity in remote mode on $name", (target) => {
  let database: TestDatabase;
  let t: TestServer;
  const recorders: EventRecorder[] = [];

  beforeAll(async () => {
    database = await target.open();
    t = await startTestServer({
      database,
      env: { AGENT_MODE: "remote", MAX_ACTIVE_WORKSPACES: "1", VM_READY_TIMEOUT_MS: "30000" },
    });
  });
  afterEach(() => {
    for (const recorder of recorders.splice(0)) recorder.close();
  });
  afterAll(async () => {
    await t.close();
    await database.close();
  });

  async function watch(taskId: string): Promise<EventRecorder> {
    const recorder = new EventRecorder(t.url);
    recorders.push(recorder);
    await recorder.join(taskId);
    return recorder;
  }

  async function metrics(): Promise<Record<string, number>> {
    const text = await fetch(`${t.url}/metrics`).then((r) => r.text());
    return Object.fromEntries(
      text
        .split("\n")
        .filter((line) => line.startsWith("umbra_workspaces_") || line.startsWith("umbra_capacity_"))
        .map((line) => [line.split(" ")[0]!, Number(line.split(" ")[1])]),
    );
  }

  it("evicts the warm workspace for a new task, then refuses with 429 while the only one is busy", {
    timeout: 120_000,
  }, async () => {
    const repo = createRepo({ "README.md": "# Capacity\n" });
    const warm = (await t.api<TaskBody>("POST", "/api/tasks", { repoUrl: repo, message: "echo kept > kept.txt" })).body
      .task;
    const warmEvents = await watch(warm.id);
    await warmEvents.waitForStatus("COMPLETED", "ACTIVE", 60_000);
    expect((await t.api<{ capacity: unknown }>("GET", "/api/config")).body.capacity).toEqual({ active: 1, max: 1 });

    // A new task at the cap: the warm workspace is cleaned up first, its work saved on its branch.
    const busy = await t.api<TaskBody>("POST", "/api/tasks", { repoUrl: repo, message: "sleep 60" });
    expect(busy.status).toBe(201);
    const evicted = (await t.api<TaskBody>("GET", `/api/tasks/${warm.id}`)).body.task;
    expect([evicted.status, evicted.initStatus, evicted.scheduledCleanupAt]).toEqual(["ARCHIVED", "INACTIVE", null]);
    const diff = (await t.api<DiffResponse>("GET", `/api/tasks/${warm.id}/diff`)).body;
    expect(diff.files.map((f) => f.path)).toEqual(["kept.txt"]);
    const busyEvents = await watch(busy.body.task.id);
    await busyEvents.waitForStatus("RUNNING", "ACTIVE", 60_000);

    // Every live workspace is busy: a new task and a cold follow-up are refused at once, nothing changes.
    const before = (await t.api<{ tasks: TaskDto[] }>("GET", "/api/tasks")).body.tasks.length;
    const refused = await fetch(`${t.url}/api/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ repoUrl: repo, message: "echo never" }),
    });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("15");
    const body = (await refused.json()) as ErrorBody;
    expect(body.error.code).toBe("CAPACITY");
    expect(body.error.message).toBe(
      "all 1 workspaces are busy (MAX_ACTIVE_WORKSPACES=1); try again when a task finishes",
    );
    const coldFollowUp = await t.api<ErrorBody>("POST", `/api/tasks/${warm.id}/messages`, { message: "cat kept.txt" });
    expect([coldFollowUp.status, coldFollowUp.body.error.code]).toEqual([429, "CAPACITY"]);
    expect((await t.api<{ tasks: TaskDto[] }>("GET", "/api/tasks")).body.tasks).toHaveLength(before);
    expect((await t.api<TaskBody>("GET", `/api/tasks/${warm.id}`)).body.task.status).toBe("ARCHIVED");

    expect((await t.api<{ capacity: unknown }>("GET", "/api/config")).body.capacity).toEqual({ active: 1, max: 1 });
    expect(await metrics()).toEqual({
      umbra_workspaces_active: 1,
      umbra_workspaces_max: 1,
      umbra_capacity_evictions_total: 1,
      umbra_capacity_refusals_total: 2,
    });

    // Stopped, the busy task's workspace is warm again: a follow-up on it needs no new workspace.
    await t.api("POST", `/api/tasks/${busy.body.task.id}/stop`);
    const warmAgain = await t.api<TaskBody>("POST", `/api/tasks/${busy.body.task.id}/messages`, { message: "true" });
    expect([warmAgain.status, warmAgain.body.task.status]).toEqual([202, "RUNNING"]);
    await busyEvents.waitForStatus("COMPLETED", "ACTIVE", 60_000);
  });
});
