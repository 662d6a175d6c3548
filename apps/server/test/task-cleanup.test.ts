import { randomUUID } from "node:crypto";
import { openDatabase, type TaskRow, taskStatusHistory, tasks } from "@repo/db";
import { eq, inArray } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { warmTask } from "../../../test/support/task-states";
import type { WorkspaceManager } from "../src/execution/types";
import { createLogger } from "../src/logger";
import { TaskCleanupService } from "../src/services/task-cleanup";
import { createTaskCore } from "../src/services/task-core";
import { WorkspaceTeardown } from "../src/services/workspace-teardown";
import { type Clock, ManualClock } from "../src/utils/clock";

const targets = await databaseTargets();
const log = createLogger("silent");
const MINUTE = 60_000;

/**
 * A workspace manager for the cleanup service's own tests: it records which
 * workspaces were saved and torn down, and can be told to fail. The
 * lifecycle tests run the service against the real managers.
 */
class RecordingWorkspaces implements WorkspaceManager {
  readonly mode = "remote" as const;
  readonly saved: string[] = [];
  readonly destroyed: string[] = [];
  failuresLeft = 0;
  runStep = async () => undefined;
  executor = async () => {
    throw new Error("not used");
  };
  async saveWork(task: TaskRow) {
    this.saved.push(task.id);
    return "sha";
  }
  async teardown(task: TaskRow) {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.failuresLeft > 0) {
      this.failuresLeft--;
      throw new Error("provider unavailable");
    }
    this.destroyed.push(task.id);
  }
  isAlive = async () => true;
  attach = async () => null;
}

function cleanupService(db: TestDatabase["db"], clock: Clock, workspaces: WorkspaceManager, workerId?: string) {
  const core = createTaskCore({ db, clock, cleanupDelayMs: 10 * MINUTE, log });
  const teardown = new WorkspaceTeardown({ status: core.status, workspaces, tasks: core.tasks, log });
  const service = new TaskCleanupService({ clock, ...core, teardown, intervalMs: MINUTE, log, workerId });
  return { service, status: core.status };
}

describe.each(targets)("task cleanup service on $name", (target) => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await target.open();
  });
  afterAll(() => database.close());

  const read = async (id: string) => (await database.db.select().from(tasks).where(eq(tasks.id, id)))[0]!;

  it("wakes at the deadline, not before, and archives the task", async () => {
    const clock = new ManualClock();
    const workspaces = new RecordingWorkspaces();
    const { service, status } = cleanupService(database.db, clock, workspaces);
    service.start();
    await service.whenIdle();
    const task = await warmTask(status, 10);
    expect(task.scheduledCleanupAt?.getTime()).toBe(clock.now().getTime() + 10 * MINUTE);

    clock.advance(10 * MINUTE - 1000);
    await service.whenIdle();
    expect((await read(task.id)).status).toBe("COMPLETED");

    clock.advance(1000);
    await service.whenIdle();
    const cleaned = await read(task.id);
    expect([cleaned.status, cleaned.initStatus, cleaned.scheduledCleanupAt]).toEqual(["ARCHIVED", "INACTIVE", null]);
    expect(workspaces.saved).toEqual([task.id]);
    expect(workspaces.destroyed).toEqual([task.id]);
    await service.stop();
  });

  it("does nothing for a task whose cleanup a follow-up cancelled", async () => {
    const clock = new ManualClock();
    const workspaces = new RecordingWorkspaces();
    const { service, status } = cleanupService(database.db, clock, workspaces);
    service.start();
    const task = await warmTask(status, 10);
    await status.startWarmFollowUp(task.id);
    clock.advance(11 * MINUTE);
    await service.whenIdle();
    expect((await read(task.id)).status).toBe("RUNNING");
    expect(workspaces.destroyed).toEqual([]);
    await service.stop();
  });

  it("processes deadlines missed while it was stopped as soon as it starts", async () => {
    const clock = new ManualClock();
    const workspaces = new RecordingWorkspaces();
    const first = cleanupService(database.db, clock, workspaces);
    first.service.start();
    const task = await warmTask(first.status, 10);
    await first.service.stop();
    clock.advance(30 * MINUTE); // the server is down past the deadline
    expect((await read(task.id)).status).toBe("COMPLETED");

    const second = cleanupService(database.db, clock, workspaces);
    second.service.start();
    await second.service.whenIdle();
    expect((await read(task.id)).status).toBe("ARCHIVED");
    await second.service.stop();
  });

  it("retries a failed teardown with backoff and never marks the task INACTIVE meanwhile", async () => {
    const clock = new ManualClock();
    const workspaces = new RecordingWorkspaces();
    workspaces.failuresLeft = 2;
    const { service, status } = cleanupService(database.db, clock, workspaces);
    service.start();
    const task = await warmTask(status, 1);
    clock.advance(MINUTE);
    await service.whenIdle();
    let row = await read(task.id);
    expect([row.status, row.initStatus, row.cleanupAttempts, row.cleanupClaimedBy]).toEqual([
      "COMPLETED",
      "ACTIVE",
      1,
      null,
    ]);
    expect(row.scheduledCleanupAt!.getTime()).toBe(clock.now().getTime() + 5_000);

    clock.advance(5_000);
    await service.whenIdle();
    row = await read(task.id);
    expect([row.status, row.initStatus, row.cleanupAttempts]).toEqual(["COMPLETED", "ACTIVE", 2]);
    expect(row.scheduledCleanupAt!.getTime()).toBe(clock.now().getTime() + 10_000);

    clock.advance(10_000);
    await service.whenIdle();
    expect((await read(task.id)).status).toBe("ARCHIVED");
    await service.stop();
  });

  it("takes over a claim whose lease expired (its worker died)", async () => {
    const clock = new ManualClock();
    const workspaces = new RecordingWorkspaces();
    const { service, status } = cleanupService(database.db, clock, workspaces);
    const task = await warmTask(status, 1);
    clock.advance(MINUTE);
    await database.db
      .update(tasks)
      .set({ cleanupClaimedBy: "dead-worker", cleanupLeaseUntil: new Date(clock.now().getTime() + MINUTE) })
      .where(eq(tasks.id, task.id));
    service.start();
    await service.whenIdle();
    expect((await read(task.id)).status).toBe("COMPLETED"); // lease still valid: hands off

    clock.advance(2 * MINUTE); // backstop poll after the lease ran out
    await service.whenIdle();
    expect((await read(task.id)).status).toBe("ARCHIVED");
    await service.stop();
  });
});

describe.runIf(targets.some((t) => t.name === "postgres"))("two cleanup services on one Postgres", () => {
  it("clean each of 200 due tasks exactly once", async () => {
    const database = await targets.find((t) => t.name === "postgres")!.open();
    const second = await openDatabase({ databaseUrl: database.url!, poolSize: 4 });
    try {
      const clock = new ManualClock();
      const workspaces = new RecordingWorkspaces();
      const a = cleanupService(database.db, clock, workspaces, "worker-a");
      const b = cleanupService(second.db, clock, workspaces, "worker-b");
      // 200 tasks whose turn COMPLETED on a warm remote workspace, due in 10 minutes.
      const now = clock.now();
      const warmRows = Array.from({ length: 200 }, () => ({
        id: randomUUID(),
        title: "t",
        mode: "remote" as const,
        repoUrl: "/r",
        status: "COMPLETED" as const,
        initStatus: "ACTIVE" as const,
        scheduledCleanupAt: new Date(now.getTime() + 10 * MINUTE),
        createdAt: now,
        updatedAt: now,
      }));
      const ids = (await database.db.insert(tasks).values(warmRows).returning({ id: tasks.id })).map((r) => r.id);
      clock.advance(10 * MINUTE);
      a.service.start();
      b.service.start();
      await Promise.all([a.service.whenIdle(), b.service.whenIdle()]);
      await Promise.all([a.service.trigger(), b.service.trigger()]);

      expect(workspaces.destroyed).toHaveLength(200);
      expect(new Set(workspaces.destroyed).size).toBe(200);
      const rows = await database.db.select().from(tasks).where(inArray(tasks.id, ids));
      expect(rows.every((r) => r.status === "ARCHIVED" && r.initStatus === "INACTIVE")).toBe(true);
      const archivedRows = await database.db
        .select()
        .from(taskStatusHistory)
        .where(inArray(taskStatusHistory.taskId, ids));
      expect(archivedRows.filter((h) => h.toValue === "ARCHIVED")).toHaveLength(200);
      await a.service.stop();
      await b.service.stop();
    } finally {
      await second.close();
      await database.close();
    }
  });
});
