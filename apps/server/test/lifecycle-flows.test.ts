/**
 * The seed's seven lifecycle flows, each its own test on a task of its own
 * (one server per mode, no state carried from one test to the next), in remote
 * mode (the `process` provider: real sandboxed sidecar processes) and in local
 * mode, asserting status, initStatus and scheduledCleanupAt at every step. The
 * 10-minute warm window is driven by a manual clock, never by sleeping.
 */
import { join } from "node:path";
import { openDatabase } from "@repo/db";
import type { TaskDto } from "@repo/types";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createRepo, tempDir } from "../../../test/support/git";
import {
  eventually,
  type Gate,
  holdFirstStep,
  pidAlive,
  readTask,
  vmSessionsOf,
} from "../../../test/support/lifecycle";
import { readSandboxRecord } from "../../../test/support/sandbox-probe";
import { EventRecorder, startTestServer, type TestServer } from "../../../test/support/server";
import { loadConfig } from "../src/config";
import { createWorkspaceManager } from "../src/execution";
import { AgentStateDirs } from "../src/execution/agent-state";
import { createLogger } from "../src/logger";
import { RepositoryStore } from "../src/repository/repository-store";
import { ManualClock } from "../src/utils/clock";
import { SecretBox } from "../src/utils/secret-box";

const MINUTE = 60_000;
const STEPS = {
  remote: ["CREATE_VM", "WAIT_VM_READY", "VERIFY_VM_WORKSPACE", "INSTALL_DEPENDENCIES", "INDEX_REPOSITORY"],
  local: ["PREPARE_WORKSPACE", "INSTALL_DEPENDENCIES", "INDEX_REPOSITORY"],
} as const;

type Mode = "remote" | "local";

// Remote flows start and destroy real sandboxes, up to three per test: a busy machine needs more than 30 s.
describe.each(["remote", "local"] as Mode[])("seed lifecycle flows in %s mode", { timeout: 120_000 }, (mode) => {
  const clock = new ManualClock(Date.UTC(2026, 10, 25, 12));
  let t: TestServer;
  let arm: () => Gate;
  const recorders: EventRecorder[] = [];

  beforeAll(async () => {
    const dataDir = tempDir("umbra-data-");
    const env = { AGENT_MODE: mode, PORT: "0", DATA_DIR: dataDir, AGENT: "shell", VM_READY_TIMEOUT_MS: "20000" };
    const database = await openDatabase();
    const real = await createWorkspaceManager(loadConfig(env), {
      db: database.db,
      clock,
      store: new RepositoryStore(join(dataDir, "repos")),
      secrets: await SecretBox.load({ dataDir }),
      agentState: new AgentStateDirs(join(dataDir, "agent-state")),
      log: createLogger("silent"),
    });
    const held = holdFirstStep(real);
    arm = held.arm;
    t = await startTestServer({ env, dataDir, clock, database, workspaces: held.manager });
  });
  afterEach(() => {
    for (const recorder of recorders.splice(0)) recorder.close();
  });
  afterAll(async () => {
    await t.close();
    await t.server.database.close();
  });

  async function current(task: TaskDto) {
    const row = await readTask(t, task.id);
    return [row.status, row.initStatus, row.scheduledCleanupAt?.toISOString() ?? null];
  }

  function listen(): EventRecorder {
    const recorder = new EventRecorder(t.url);
    recorders.push(recorder);
    return recorder;
  }

  /** Creates a task whose first provisioning step is held; its room is joined. */
  async function createHeld() {
    const gate = arm();
    const recorder = listen();
    const created = await t.api<{ task: TaskDto }>("POST", "/api/tasks", {
      repoUrl: createRepo({ "README.md": "# Flows\n" }),
      message: "echo one > one.txt",
    });
    await gate.reached;
    await recorder.join(created.body.task.id);
    return { task: created.body.task, gate, recorder };
  }

  /** A task whose first turn COMPLETED (warm in remote mode); its room was joined before it started. */
  async function completedTask() {
    const { task, gate, recorder } = await createHeld();
    gate.open();
    await recorder.waitForStatus("COMPLETED");
    return { task, recorder };
  }

  /** A completed task whose workspace is gone: cleaned up (remote) or archived (local). */
  async function cleanedUpTask() {
    const { task, recorder } = await completedTask();
    if (mode === "local") await t.api("POST", `/api/tasks/${task.id}/archive`);
    else clock.advance(10 * MINUTE);
    await recorder.waitForStatus("ARCHIVED");
    return { task, recorder };
  }

  const warmWindowFromNow = () =>
    mode === "remote" ? new Date(clock.now().getTime() + 10 * MINUTE).toISOString() : null;

  it("new task creation: INITIALIZING / INACTIVE, nothing scheduled", async () => {
    const gate = arm();
    const created = await t.api<{ task: TaskDto }>("POST", "/api/tasks", {
      repoUrl: createRepo({ "README.md": "# Flows\n" }),
      message: "echo one > one.txt",
    });
    const task = created.body.task;
    expect(created.status).toBe(201);
    expect([task.status, task.initStatus, task.scheduledCleanupAt]).toEqual(["INITIALIZING", "INACTIVE", null]);
    await gate.reached;
    gate.open();
    await eventually(async () => (await readTask(t, task.id)).status === "COMPLETED");
  });

  it("during initialization: INITIALIZING through every step of the mode, in order", async () => {
    const { task, gate, recorder } = await createHeld();
    const [first, ...rest] = STEPS[mode];
    expect(await current(task)).toEqual(["INITIALIZING", first, null]);
    gate.open();
    await recorder.waitForStatus("INITIALIZING", "ACTIVE");
    expect(recorder.statusTrail().slice(0, rest.length + 1)).toEqual([
      ...rest.map((step) => `INITIALIZING/${step}`),
      "INITIALIZING/ACTIVE",
    ]);
  });

  it("ready for work: RUNNING / ACTIVE", async () => {
    const { gate, recorder } = await createHeld();
    gate.open();
    const running = await recorder.waitForStatus("RUNNING");
    expect(running.name === "task-status-update" && running.payload.initStatus).toBe("ACTIVE");
  });

  it(`task completion: COMPLETED${mode === "remote" ? " with cleanup scheduled 10 minutes out" : ", nothing scheduled"}`, async () => {
    const { task, gate, recorder } = await createHeld();
    gate.open();
    await recorder.waitForStatus("COMPLETED");
    expect(await current(task)).toEqual(["COMPLETED", "ACTIVE", warmWindowFromNow()]);
  });

  it("follow-up within the window: RUNNING, cleanup cancelled, initStatus stays ACTIVE, no provisioning", async () => {
    const { task, recorder } = await completedTask();
    const sessionsBefore = await vmSessionsOf(t, task.id);
    clock.advance(9 * MINUTE);
    recorder.clear();
    const follow = await t.api<{ task: TaskDto }>("POST", `/api/tasks/${task.id}/messages`, {
      message: "cat one.txt && echo two > two.txt",
    });
    expect(follow.status).toBe(202);
    expect([follow.body.task.status, follow.body.task.initStatus, follow.body.task.scheduledCleanupAt]).toEqual([
      "RUNNING",
      "ACTIVE",
      null,
    ]);
    await recorder.waitForStatus("COMPLETED");
    expect(recorder.statusTrail()).toEqual(["RUNNING/ACTIVE", "COMPLETED/ACTIVE"]);
    expect(recorder.events.some((e) => e.name === "init-progress")).toBe(false);
    expect(await vmSessionsOf(t, task.id)).toEqual(sessionsBefore);
    expect(await current(task)).toEqual(["COMPLETED", "ACTIVE", warmWindowFromNow()]);
  });

  it(`final cleanup: ${mode === "remote" ? "ARCHIVED / INACTIVE / nothing scheduled, the sandbox destroyed" : "none in local mode; the workspace stays ACTIVE"}`, async () => {
    const { task, recorder } = await completedTask();
    const [session] = await vmSessionsOf(t, task.id);
    const pid = mode === "remote" ? (readSandboxRecord(t.dataDir, session!.externalId)?.pid ?? null) : null;
    recorder.clear();
    clock.advance(10 * MINUTE - 1);
    await t.server.cleanup?.whenIdle();
    expect((await current(task))[0]).toBe("COMPLETED");
    clock.advance(1);
    if (mode === "local") {
      expect(t.server.cleanup).toBeNull();
      expect(await current(task)).toEqual(["COMPLETED", "ACTIVE", null]);
      return;
    }
    await recorder.waitForStatus("ARCHIVED");
    expect(await current(task)).toEqual(["ARCHIVED", "INACTIVE", null]);
    const [ended] = await vmSessionsOf(t, task.id);
    expect(ended?.active).toBe(false);
    expect(ended?.endedAt).not.toBeNull();
    if (pid) await eventually(async () => !pidAlive(pid));
  });

  it("follow-up after cleanup: INITIALIZING / INACTIVE → steps → ACTIVE, earlier work restored, then RUNNING", async () => {
    const { task, recorder } = await cleanedUpTask();
    recorder.clear();
    const follow = await t.api<{ task: TaskDto }>("POST", `/api/tasks/${task.id}/messages`, {
      message: "cat one.txt > both.txt && echo two >> both.txt",
    });
    expect(follow.status).toBe(202);
    expect([follow.body.task.status, follow.body.task.initStatus]).toEqual(["INITIALIZING", "INACTIVE"]);
    await recorder.waitForStatus("COMPLETED");
    expect(recorder.statusTrail()).toEqual([
      "INITIALIZING/INACTIVE",
      ...STEPS[mode].map((step) => `INITIALIZING/${step}`),
      "INITIALIZING/ACTIVE",
      "RUNNING/ACTIVE",
      "COMPLETED/ACTIVE",
    ]);
    const diff = (await t.api<{ files: { path: string }[]; patch: string }>("GET", `/api/tasks/${task.id}/diff`)).body;
    expect(diff.files.map((f) => f.path).sort()).toEqual(["both.txt", "one.txt"]);
    expect(diff.patch).toContain("+one\n+two");
  });
});
