import type { DiffResponse, TaskDto } from "@repo/types";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRepo, tempDir } from "../../../test/support/git";
import { eventually, pidAlive, readTask, vmSessionsOf } from "../../../test/support/lifecycle";
import { readSandboxRecord } from "../../../test/support/sandbox-probe";
import { EventRecorder, startTestServer, type TestServer } from "../../../test/support/server";
import { ManualClock } from "../src/utils/clock";

const MINUTE = 60_000;
const REMOTE = { AGENT_MODE: "remote", VM_READY_TIMEOUT_MS: "20000" };

function sidecarPid(dataDir: string, taskId: string): number {
  const record = readSandboxRecord(dataDir, taskId);
  if (!record) throw new Error(`task ${taskId} has no sandbox record`);
  return record.pid;
}

async function createAndFinish(t: TestServer, recorder: EventRecorder, message: string): Promise<TaskDto> {
  const { task } = (await t.api<{ task: TaskDto }>("POST", "/api/tasks", { repoUrl: createRepo(), message })).body;
  await recorder.join(task.id);
  await eventually(async () => (await readTask(t, task.id)).status === "COMPLETED");
  return task;
}

describe("remote races", () => {
  const clock = new ManualClock(Date.UTC(2026, 10, 25, 12));
  let t: TestServer;
  let recorder: EventRecorder;

  beforeAll(async () => {
    t = await startTestServer({ env: REMOTE, clock });
    recorder = new EventRecorder(t.url);
  });
  afterAll(async () => {
    recorder.close();
    await t.close();
  });

  // Twelve rounds, each possibly starting a fresh sandbox: a loaded machine needs far more than the default timeout.
  it("a follow-up racing the deadline always ends consistent, with its message processed", async () => {
    const task = await createAndFinish(t, recorder, "echo 0 > race.txt");
    const outcomes = { warm: 0, reinitialized: 0 };
    for (let round = 1; round <= 12; round++) {
      const before = await readTask(t, task.id);
      expect(before.status).toBe("COMPLETED");
      expect(before.scheduledCleanupAt).not.toBeNull();
      // The deadline passes within a few milliseconds of the follow-up, before or after it.
      const deadline = before.scheduledCleanupAt!;
      const jitterMs = (round % 4) * 4;
      if (round % 2 === 0) clock.set(deadline);
      else setTimeout(() => clock.set(deadline), jitterMs);
      const follow = await t.api<{ task: TaskDto }>("POST", `/api/tasks/${task.id}/messages`, {
        message: `echo ${round} >> race.txt`,
      });
      expect(follow.status).toBe(202);
      if (follow.body.task.status === "RUNNING") outcomes.warm++;
      else outcomes.reinitialized++;
      await eventually(async () => {
        const row = await readTask(t, task.id);
        return row.status === "COMPLETED" && row.scheduledCleanupAt !== null && !t.server.turns.isRunning(task.id);
      });
      const after = await readTask(t, task.id);
      expect([after.initStatus, after.cleanupClaimedBy]).toEqual(["ACTIVE", null]);
      const sessions = await vmSessionsOf(t, task.id);
      expect(sessions.filter((s) => s.active)).toHaveLength(1);
      const diff = (await t.api<DiffResponse>("GET", `/api/tasks/${task.id}/diff`)).body;
      const lines = Array.from({ length: round + 1 }, (_, i) => `+${i}`).join("\n");
      expect(diff.patch).toContain(lines);
    }
    expect(outcomes.warm + outcomes.reinitialized).toBe(12);
    expect(outcomes.reinitialized).toBeGreaterThan(0);
  }, 180_000);

  it("accepts one of two simultaneous follow-ups and refuses the other with TASK_BUSY", async () => {
    const task = await createAndFinish(t, recorder, "true");
    const answers = await Promise.all([
      t.api<{ error?: { code: string } }>("POST", `/api/tasks/${task.id}/messages`, { message: "echo a > a.txt" }),
      t.api<{ error?: { code: string } }>("POST", `/api/tasks/${task.id}/messages`, { message: "echo b > b.txt" }),
    ]);
    expect(answers.map((a) => a.status).sort()).toEqual([202, 409]);
    expect(answers.find((a) => a.status === 409)?.body.error?.code).toBe("TASK_BUSY");
    await eventually(
      async () => (await readTask(t, task.id)).status === "COMPLETED" && !t.server.turns.isRunning(task.id),
    );
    const diff = (await t.api<DiffResponse>("GET", `/api/tasks/${task.id}/diff`)).body;
    expect(diff.files).toHaveLength(1);
  });

  it("archive during a turn stops the turn first, saves its work, then destroys the sandbox", async () => {
    const { task } = (
      await t.api<{ task: TaskDto }>("POST", "/api/tasks", {
        repoUrl: createRepo(),
        message: "echo started > started.txt; sleep 30",
      })
    ).body;
    await recorder.join(task.id);
    await eventually(async () => (await readTask(t, task.id)).status === "RUNNING");
    const pid = sidecarPid(t.dataDir, task.id);
    await eventually(async () => {
      const executor = await t.server.workspaces.executor(await readTask(t, task.id));
      return (await executor.listDir(".")).some((e) => e.name === "started.txt");
    });
    const archived = await t.api<{ task: TaskDto }>("POST", `/api/tasks/${task.id}/archive`);
    expect(archived.status).toBe(200);
    expect([archived.body.task.status, archived.body.task.initStatus, archived.body.task.scheduledCleanupAt]).toEqual([
      "ARCHIVED",
      "INACTIVE",
      null,
    ]);
    const diff = (await t.api<DiffResponse>("GET", `/api/tasks/${task.id}/diff`)).body;
    expect(diff.files.map((f) => f.path)).toEqual(["started.txt"]);
    await eventually(async () => !pidAlive(pid));
  });

  it("notices a sidecar that died while the task was idle: the next follow-up re-initializes", async () => {
    const task = await createAndFinish(t, recorder, "echo first > first.txt");
    process.kill(sidecarPid(t.dataDir, task.id), "SIGKILL");
    const follow = await t.api<{ task: TaskDto }>("POST", `/api/tasks/${task.id}/messages`, {
      message: "cat first.txt > second.txt",
    });
    expect(follow.status).toBe(202);
    expect([follow.body.task.status, follow.body.task.initStatus]).toEqual(["INITIALIZING", "INACTIVE"]);
    await eventually(async () => (await readTask(t, task.id)).status === "COMPLETED");
    const diff = (await t.api<DiffResponse>("GET", `/api/tasks/${task.id}/diff`)).body;
    expect(diff.files.map((f) => f.path).sort()).toEqual(["first.txt", "second.txt"]);
    expect((await vmSessionsOf(t, task.id)).filter((s) => s.active)).toHaveLength(1);
  });
});

describe("restart past a deadline", () => {
  // Two server starts and a sandbox: on a loaded two-core machine more than the default 30 s.
  it("cleans the task up as soon as the server starts again", async () => {
    const dataDir = tempDir("umbra-restart-");
    const clock = new ManualClock(Date.UTC(2026, 10, 25, 12));
    const first = await startTestServer({ env: REMOTE, clock, dataDir });
    const recorder = new EventRecorder(first.url);
    const task = await createAndFinish(first, recorder, "echo saved > saved.txt");
    recorder.close();
    const pid = sidecarPid(dataDir, task.id);
    const scheduled = (await readTask(first, task.id)).scheduledCleanupAt!;
    expect(scheduled.getTime()).toBe(clock.now().getTime() + 10 * MINUTE);
    await first.close({ keepSandboxes: true });
    expect(pidAlive(pid)).toBe(true); // a warm sandbox outlives a server restart

    clock.advance(30 * MINUTE); // the deadline passes while the server is down
    const second = await startTestServer({ env: REMOTE, clock, dataDir });
    try {
      await eventually(async () => (await readTask(second, task.id)).status === "ARCHIVED");
      const row = await readTask(second, task.id);
      expect([row.initStatus, row.scheduledCleanupAt]).toEqual(["INACTIVE", null]);
      await eventually(async () => !pidAlive(pid));
      const diff = (await second.api<DiffResponse>("GET", `/api/tasks/${task.id}/diff`)).body;
      expect(diff.files.map((f) => f.path)).toEqual(["saved.txt"]);
    } finally {
      await second.close();
    }
  }, 120_000);
});
