import { randomUUID } from "node:crypto";
import { openDatabase, type TaskRow, taskStatusHistory, tasks } from "@repo/db";
import { INIT_STATUSES, type InitStatus, TASK_STATUSES, type TaskMode, type TaskStatus } from "@repo/types";
import { asc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { InvalidTransitionError, NotFoundError } from "../src/errors";
import { ManualClock } from "../src/utils/clock";
import { createTaskStatusStore, findTransition, type TaskChange } from "../src/utils/task-status";

const targets = await databaseTargets();

/** Every (status, initStatus) pair the schema allows, for a task of `mode`. */
function reachableStates() {
  const states: { status: TaskStatus; initStatus: InitStatus }[] = [];
  for (const status of TASK_STATUSES) {
    for (const initStatus of INIT_STATUSES) {
      if (status === "ARCHIVED" && initStatus !== "INACTIVE") continue;
      if (status === "RUNNING" && initStatus !== "ACTIVE") continue;
      states.push({ status, initStatus });
    }
  }
  return states;
}

describe.each(targets)("task status machine on $name", (target) => {
  let database: TestDatabase;
  const clock = new ManualClock();
  const changes: TaskChange[] = [];

  beforeAll(async () => {
    database = await target.open();
  });
  afterAll(() => database.close());

  const store = () => createTaskStatusStore({ db: database.db, clock, onChange: (c) => changes.push(c) });

  async function insertTask(state: Partial<TaskRow> & { mode?: TaskMode } = {}): Promise<TaskRow> {
    const now = clock.now();
    const [row] = await database.db
      .insert(tasks)
      .values({
        id: randomUUID(),
        title: "t",
        mode: "remote",
        repoUrl: "/repo",
        createdAt: now,
        updatedAt: now,
        ...state,
      })
      .returning();
    return row!;
  }

  async function readTask(id: string) {
    const [row] = await database.db.select().from(tasks).where(eq(tasks.id, id));
    return row!;
  }

  it("allows every move in the table and refuses every other one without changing the row", async () => {
    const s = store();
    let allowed = 0;
    let refused = 0;
    for (const from of reachableStates()) {
      for (const to of TASK_STATUSES) {
        const row = await insertTask(from);
        const transition = findTransition(from.status, to);
        const permitted =
          transition !== undefined &&
          (!transition.requiresInitStatus || transition.requiresInitStatus === from.initStatus) &&
          !(to === "RUNNING" && from.initStatus !== "ACTIVE");
        if (permitted) {
          const updated = await s.setTaskStatus(row.id, to, { reason: "walk" });
          expect(updated.status).toBe(to);
          if (to === "ARCHIVED") expect(updated.initStatus).toBe("INACTIVE");
          expect(updated.version).toBe(row.version + 1);
          allowed++;
        } else {
          await expect(s.setTaskStatus(row.id, to), `${from.status}/${from.initStatus} → ${to}`).rejects.toBeInstanceOf(
            InvalidTransitionError,
          );
          expect(await readTask(row.id)).toEqual(row);
          refused++;
        }
      }
    }
    expect(allowed).toBeGreaterThan(20);
    expect(refused).toBeGreaterThan(100);
  });

  it("writes a history row for each field a move changes, in the same transaction", async () => {
    const s = store();
    const row = await insertTask({ status: "INITIALIZING", initStatus: "INDEX_REPOSITORY" });
    await s.setTaskStatus(row.id, "FAILED", { initStatus: "INACTIVE", reason: "step failed" });
    const history = await database.db
      .select()
      .from(taskStatusHistory)
      .where(eq(taskStatusHistory.taskId, row.id))
      .orderBy(asc(taskStatusHistory.id));
    expect(history.map((h) => [h.field, h.fromValue, h.toValue, h.reason])).toEqual([
      ["status", "INITIALIZING", "FAILED", "step failed"],
      ["initStatus", "INDEX_REPOSITORY", "INACTIVE", "step failed"],
    ]);
  });

  it("reports a missing task as NotFoundError", async () => {
    await expect(store().setTaskStatus(randomUUID(), "RUNNING")).rejects.toBeInstanceOf(NotFoundError);
  });

  it("walks the seed's lifecycle and emits each change after commit, in order", async () => {
    const s = store();
    changes.length = 0;
    const task = await s.createTask({ id: randomUUID(), title: "lifecycle", mode: "remote", repoUrl: "/repo" });
    expect([task.status, task.initStatus, task.scheduledCleanupAt]).toEqual(["INITIALIZING", "INACTIVE", null]);
    for (const step of ["CREATE_VM", "WAIT_VM_READY", "VERIFY_VM_WORKSPACE", "INDEX_REPOSITORY", "ACTIVE"] as const) {
      expect((await s.setInitStatus(task.id, step)).initStatus).toBe(step);
    }
    expect((await s.setTaskStatus(task.id, "RUNNING")).status).toBe("RUNNING");
    await s.setTaskStatus(task.id, "COMPLETED");
    const scheduled = await s.scheduleTaskCleanup(task.id, 10);
    expect(scheduled.scheduledCleanupAt?.getTime()).toBe(clock.now().getTime() + 600_000);
    const warm = await s.setTaskStatus(task.id, "RUNNING", { requireUnclaimed: true });
    expect([warm.status, warm.initStatus, warm.scheduledCleanupAt]).toEqual(["RUNNING", "ACTIVE", null]);
    await s.setTaskStatus(task.id, "COMPLETED");
    await s.scheduleTaskCleanup(task.id, 10);
    const archived = await s.setTaskStatus(task.id, "ARCHIVED");
    expect([archived.status, archived.initStatus, archived.scheduledCleanupAt]).toEqual(["ARCHIVED", "INACTIVE", null]);
    const reinit = await s.setTaskStatus(task.id, "INITIALIZING");
    expect([reinit.status, reinit.initStatus]).toEqual(["INITIALIZING", "INACTIVE"]);
    expect(changes.map((c) => `${c.task.status}/${c.task.initStatus}`)).toEqual([
      "INITIALIZING/CREATE_VM",
      "INITIALIZING/WAIT_VM_READY",
      "INITIALIZING/VERIFY_VM_WORKSPACE",
      "INITIALIZING/INDEX_REPOSITORY",
      "INITIALIZING/ACTIVE",
      "RUNNING/ACTIVE",
      "COMPLETED/ACTIVE",
      "COMPLETED/ACTIVE",
      "RUNNING/ACTIVE",
      "COMPLETED/ACTIVE",
      "COMPLETED/ACTIVE",
      "ARCHIVED/INACTIVE",
      "INITIALIZING/INACTIVE",
    ]);
  });

  it("schedules cleanup only for a warm remote task that is not busy", async () => {
    const s = store();
    const cases: (Partial<TaskRow> & { ok: boolean })[] = [
      { mode: "remote", status: "COMPLETED", initStatus: "ACTIVE", ok: true },
      { mode: "remote", status: "STOPPED", initStatus: "ACTIVE", ok: true },
      { mode: "remote", status: "FAILED", initStatus: "ACTIVE", ok: true },
      { mode: "local", status: "COMPLETED", initStatus: "ACTIVE", ok: false },
      { mode: "remote", status: "RUNNING", initStatus: "ACTIVE", ok: false },
      { mode: "remote", status: "COMPLETED", initStatus: "INACTIVE", ok: false },
      { mode: "remote", status: "ARCHIVED", initStatus: "INACTIVE", ok: false },
      { mode: "remote", status: "INITIALIZING", initStatus: "ACTIVE", ok: false },
    ];
    for (const { ok, ...state } of cases) {
      const row = await insertTask(state);
      if (ok) {
        expect((await s.scheduleTaskCleanup(row.id, 0.5)).scheduledCleanupAt?.getTime()).toBe(
          clock.now().getTime() + 30_000,
        );
      } else {
        await expect(s.scheduleTaskCleanup(row.id, 10)).rejects.toBeInstanceOf(InvalidTransitionError);
        expect(await readTask(row.id)).toEqual(row);
      }
    }
  });

  it("refuses to cancel a cleanup the cleanup service has claimed", async () => {
    const s = store();
    const at = new Date(clock.now().getTime() - 1000);
    const claimed = await insertTask({
      status: "COMPLETED",
      initStatus: "ACTIVE",
      scheduledCleanupAt: at,
      cleanupClaimedBy: "worker-1",
      cleanupLeaseUntil: new Date(clock.now().getTime() + 60_000),
    });
    await expect(s.cancelTaskCleanup(claimed.id)).rejects.toBeInstanceOf(InvalidTransitionError);
    await expect(s.setTaskStatus(claimed.id, "RUNNING", { requireUnclaimed: true })).rejects.toBeInstanceOf(
      InvalidTransitionError,
    );
    expect(await readTask(claimed.id)).toEqual(claimed);

    const free = await insertTask({ status: "COMPLETED", initStatus: "ACTIVE", scheduledCleanupAt: at });
    expect((await s.cancelTaskCleanup(free.id)).scheduledCleanupAt).toBeNull();
  });

  it("keeps the invariants: provisioning steps only while INITIALIZING, no INACTIVE under a running agent", async () => {
    const s = store();
    const running = await insertTask({ status: "RUNNING", initStatus: "ACTIVE" });
    await expect(s.setInitStatus(running.id, "INACTIVE")).rejects.toBeInstanceOf(InvalidTransitionError);
    await expect(s.setInitStatus(running.id, "CREATE_VM")).rejects.toBeInstanceOf(InvalidTransitionError);
    expect(await readTask(running.id)).toEqual(running);

    const warm = await insertTask({
      status: "COMPLETED",
      initStatus: "ACTIVE",
      scheduledCleanupAt: new Date(clock.now().getTime() + 1000),
    });
    const dead = await s.setInitStatus(warm.id, "INACTIVE", { reason: "sandbox died" });
    expect([dead.status, dead.initStatus, dead.scheduledCleanupAt]).toEqual(["COMPLETED", "INACTIVE", null]);
  });
});

describe.runIf(targets.some((t) => t.name === "postgres"))("compare-and-set across connections", () => {
  it("lets exactly one of two racing writers win", async () => {
    const target = targets.find((t) => t.name === "postgres")!;
    const database = await target.open();
    const second = await openDatabase({ databaseUrl: database.url! });
    const clock = new ManualClock();
    try {
      const a = createTaskStatusStore({ db: database.db, clock });
      const b = createTaskStatusStore({ db: second.db, clock });
      for (let round = 0; round < 25; round++) {
        const task = await a.createTask({ id: randomUUID(), title: "race", mode: "remote", repoUrl: "/r" });
        await a.setInitStatus(task.id, "ACTIVE");
        await a.setTaskStatus(task.id, "RUNNING");
        await a.setTaskStatus(task.id, "COMPLETED");
        await a.setInitStatus(task.id, "INACTIVE");
        // Two follow-ups race to re-initialize the same idle task.
        const results = await Promise.allSettled([
          a.setTaskStatus(task.id, "INITIALIZING"),
          b.setTaskStatus(task.id, "INITIALIZING"),
        ]);
        expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
        const rejected = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
        expect(rejected.reason).toBeInstanceOf(InvalidTransitionError);
        const history = await database.db.select().from(taskStatusHistory).where(eq(taskStatusHistory.taskId, task.id));
        expect(history.filter((h) => h.toValue === "INITIALIZING" && h.fromValue === "COMPLETED")).toHaveLength(1);
      }
    } finally {
      await second.close();
      await database.close();
    }
  });
});
