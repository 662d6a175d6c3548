/**
 * A sandbox that does not answer is never destroyed unsaved on that ground:
 * the cleanup keeps it, reports it on the task and retries with backoff;
 * once it answers the work is saved and the cleanup completes. Only after the
 * configured grace period is it destroyed without saving — recorded on the task.
 */
import type { TaskRow } from "@repo/db";
import { afterEach, describe, expect, it } from "vitest";
import { createRepo } from "../../../test/support/git";
import { eventually, readTask } from "../../../test/support/lifecycle";
import { branchFiles, processRunning, readSandboxRecord } from "../../../test/support/sandbox-probe";
import { startTestServer, type TestServer } from "../../../test/support/server";
import { ManualClock } from "../src/utils/clock";

const MINUTE = 60_000;
const servers: TestServer[] = [];
const frozen: number[] = [];
afterEach(async () => {
  for (const pid of frozen.splice(0)) {
    try {
      process.kill(-pid, "SIGCONT");
    } catch {
      // already gone
    }
  }
  for (const t of servers.splice(0)) await t.close();
});

/** A remote server on a manual clock, and a task whose turn completed with a file written after it (unsaved). */
async function warmTaskWithUnsavedFile(graceMs: number) {
  const clock = new ManualClock(Date.UTC(2026, 10, 25, 12));
  const t = await startTestServer({
    clock,
    env: {
      AGENT_MODE: "remote",
      VM_READY_TIMEOUT_MS: "20000",
      TASK_CLEANUP_DELAY_MS: String(10 * MINUTE),
      SANDBOX_UNREACHABLE_GRACE_MS: String(graceMs),
    },
  });
  servers.push(t);
  const created = await t.api<{ task: TaskRow }>("POST", "/api/tasks", {
    repoUrl: createRepo(),
    message: "echo one > one.txt",
  });
  const id = created.body.task.id;
  await eventually(async () => (await readTask(t, id)).status === "COMPLETED");
  const executor = await t.server.workspaces.executor(await readTask(t, id));
  await executor.writeFile("late.txt", "written after the turn\n");
  const pid = readSandboxRecord(t.dataDir, id)!.pid;
  return { t, clock, id, pid };
}

function freeze(pid: number): void {
  process.kill(-pid, "SIGSTOP");
  frozen.push(pid);
}

describe("a sandbox that does not answer at cleanup time", () => {
  it("is kept and reported while frozen; after SIGCONT its work is saved and the cleanup completes", async () => {
    const { t, clock, id, pid } = await warmTaskWithUnsavedFile(6 * 60 * MINUTE);
    freeze(pid);
    clock.advance(10 * MINUTE); // the warm window ends
    const reported = await eventually(async () => {
      const row = await readTask(t, id);
      return row.workspaceUnreachableSince && !row.cleanupClaimedBy ? row : undefined;
    }, 60_000);
    expect([reported.status, reported.initStatus]).toEqual(["COMPLETED", "ACTIVE"]);
    expect(reported.errorMessage).toMatch(/sandbox has not answered since .*unsaved work is kept/);
    expect(reported.scheduledCleanupAt!.getTime()).toBeGreaterThan(clock.now().getTime()); // retried later
    expect(processRunning(pid)).toBe(true);
    expect(branchFiles(t.dataDir, id)).not.toContain("late.txt");

    process.kill(-pid, "SIGCONT");
    clock.set(reported.scheduledCleanupAt!);
    const archived = await eventually(async () => {
      const row = await readTask(t, id);
      return row.status === "ARCHIVED" ? row : undefined;
    }, 60_000);
    expect([archived.initStatus, archived.errorMessage, archived.workspaceUnreachableSince]).toEqual([
      "INACTIVE",
      null,
      null,
    ]);
    expect(branchFiles(t.dataDir, id)).toEqual(expect.arrayContaining(["one.txt", "late.txt"]));
    await eventually(async () => !processRunning(pid));
  }, 240_000);

  it("is destroyed without saving only after the grace period, and that is recorded on the task", async () => {
    const graceMs = 30 * MINUTE;
    const { t, clock, id, pid } = await warmTaskWithUnsavedFile(graceMs);
    freeze(pid);
    clock.advance(10 * MINUTE);
    const first = await eventually(async () => {
      const row = await readTask(t, id);
      return row.workspaceUnreachableSince && !row.cleanupClaimedBy ? row : undefined;
    }, 60_000);
    expect(processRunning(pid)).toBe(true);
    clock.set(first.workspaceUnreachableSince!.getTime() + graceMs); // retries fall due up to the end of the grace
    const archived = await eventually(async () => {
      const row = await readTask(t, id);
      return row.status === "ARCHIVED" ? row : undefined;
    }, 120_000);
    expect(archived.errorMessage).toMatch(/did not answer from .* destroyed without saving its uncommitted work/);
    const messages = await t.server.database.db.query.messages.findMany({ where: (m, { eq }) => eq(m.taskId, id) });
    expect(messages.filter((m) => m.role === "system").map((m) => m.content)).toEqual([archived.errorMessage]);
    expect(branchFiles(t.dataDir, id)).toContain("one.txt");
    expect(branchFiles(t.dataDir, id)).not.toContain("late.txt");
    await eventually(async () => !processRunning(pid));
  }, 240_000);
});
