import { randomUUID } from "node:crypto";
import { openDatabase, type TaskRow, taskStatusHistory, tasks } from "@repo/db";
import { INIT_STATUSES, type InitStatus, TASK_STATUSES, type TaskMode, type TaskStatus } from "@repo/types";
import { asc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { warmTask } from "../../../test/support/task-states";
import { NotFoundError } from "../src/errors";
import { ManualClock } from "../src/utils/clock";
import { TASK_MOVES } from "../src/utils/task-moves";
import { createTaskStatusStore, type TaskChange, type TaskStatusStore } from "../src/utils/task-status";

const targets = await databaseTargets();
const DELAY_MS = 600_000;

/*
 * SPEC §1, written out by hand: for every named move, the statuses it starts
 * from, the initStatus and claim it needs, and where it leaves the task. The
 * test below holds the code's table against this one; it never asks the code
 * what is allowed.
 */
type Schedule = "none" | "warm window" | "kept";
interface ExpectedMove {
  from: TaskStatus[];
  needsInitStatus?: InitStatus;
  needsClaim?: "none" | "mine";
  /** The running work's owner the move needs: this process, or no live owner but this process. */
  needsOwner: "mine" | "no other";
  to: [TaskStatus, InitStatus | "same"];
  schedule: Schedule;
  /** The lastOutcome the move records; unset = left as it was. */
  outcome?: "COMPLETED" | "FAILED" | "STOPPED";
  /** Who owns the work after the move. */
  ownerAfter: "me" | "nobody";
}
const SPEC_MOVES: Record<string, ExpectedMove> = {
  startTurn: {
    from: ["INITIALIZING"],
    needsInitStatus: "ACTIVE",
    needsOwner: "mine",
    to: ["RUNNING", "ACTIVE"],
    schedule: "none",
    ownerAfter: "me",
  },
  failInitialization: {
    from: ["INITIALIZING"],
    needsOwner: "mine",
    to: ["FAILED", "INACTIVE"],
    schedule: "none",
    outcome: "FAILED",
    ownerAfter: "nobody",
  },
  stopInitialization: {
    from: ["INITIALIZING"],
    needsOwner: "mine",
    to: ["STOPPED", "INACTIVE"],
    schedule: "none",
    outcome: "STOPPED",
    ownerAfter: "nobody",
  },
  completeTurn: {
    from: ["RUNNING"],
    needsOwner: "mine",
    to: ["COMPLETED", "same"],
    schedule: "warm window",
    outcome: "COMPLETED",
    ownerAfter: "nobody",
  },
  failTurn: {
    from: ["RUNNING"],
    needsOwner: "mine",
    to: ["FAILED", "same"],
    schedule: "warm window",
    outcome: "FAILED",
    ownerAfter: "nobody",
  },
  stopTurn: {
    from: ["RUNNING"],
    needsOwner: "mine",
    to: ["STOPPED", "same"],
    schedule: "warm window",
    outcome: "STOPPED",
    ownerAfter: "nobody",
  },
  interruptTurn: {
    from: ["RUNNING"],
    needsOwner: "mine",
    to: ["STOPPED", "same"],
    schedule: "kept",
    outcome: "STOPPED",
    ownerAfter: "nobody",
  },
  interruptTurnWorkspaceRemoved: {
    from: ["RUNNING"],
    needsOwner: "mine",
    to: ["STOPPED", "INACTIVE"],
    schedule: "none",
    outcome: "STOPPED",
    ownerAfter: "nobody",
  },
  startWarmFollowUp: {
    from: ["COMPLETED", "STOPPED", "FAILED"],
    needsInitStatus: "ACTIVE",
    needsClaim: "none",
    needsOwner: "no other",
    to: ["RUNNING", "ACTIVE"],
    schedule: "none",
    ownerAfter: "me",
  },
  beginReinitialization: {
    from: ["COMPLETED", "STOPPED", "FAILED", "ARCHIVED"],
    needsInitStatus: "INACTIVE",
    needsOwner: "no other",
    to: ["INITIALIZING", "INACTIVE"],
    schedule: "none",
    ownerAfter: "me",
  },
  archiveByCleanup: {
    from: ["INITIALIZING", "RUNNING", "STOPPED", "COMPLETED", "FAILED"],
    needsClaim: "mine",
    needsOwner: "no other",
    to: ["ARCHIVED", "INACTIVE"],
    schedule: "none",
    ownerAfter: "nobody",
  },
  archiveByUser: {
    from: ["INITIALIZING", "RUNNING", "STOPPED", "COMPLETED", "FAILED"],
    needsOwner: "no other",
    to: ["ARCHIVED", "INACTIVE"],
    schedule: "none",
    ownerAfter: "nobody",
  },
};

/** The steps of each mode, in order, as SPEC §1 lists them. */
const SPEC_STEPS: Record<TaskMode, InitStatus[]> = {
  local: ["PREPARE_WORKSPACE", "INSTALL_DEPENDENCIES", "INDEX_REPOSITORY"],
  remote: ["CREATE_VM", "WAIT_VM_READY", "VERIFY_VM_WORKSPACE", "INSTALL_DEPENDENCIES", "INDEX_REPOSITORY"],
};

const WORKER = "worker-1";
/** The process the store under test moves as, and another one. */
const ME = "replica-me";
const OTHER = "replica-other";

type Owner = null | "me" | "other, lease holds" | "other, lease expired";

interface StartState {
  mode: TaskMode;
  status: TaskStatus;
  initStatus: InitStatus;
  scheduled: boolean;
  claimedBy: string | null;
  owner: Owner;
}

/**
 * Every state the schema allows for a remote task, with and without a
 * schedule or a claim where one can exist; and the local states a turn ends
 * from or rests in, where the mode changes what a move does (no warm window).
 */
function startStates(): StartState[] {
  const states: StartState[] = [];
  for (const mode of ["remote", "local"] as const) {
    for (const status of mode === "remote" ? TASK_STATUSES : (["RUNNING", "COMPLETED"] as const)) {
      for (const initStatus of INIT_STATUSES) {
        if (status === "ARCHIVED" && initStatus !== "INACTIVE") continue;
        if (status === "RUNNING" && initStatus !== "ACTIVE") continue;
        const busy = status === "INITIALIZING" || status === "RUNNING";
        const owners: Owner[] = busy ? [null, "me", "other, lease holds", "other, lease expired"] : [null];
        for (const owner of owners) states.push({ mode, status, initStatus, scheduled: false, claimedBy: null, owner });
        const warm =
          mode === "remote" && initStatus === "ACTIVE" && ["COMPLETED", "STOPPED", "FAILED"].includes(status);
        if (warm) {
          states.push({ mode, status, initStatus, scheduled: true, claimedBy: null, owner: null });
          states.push({ mode, status, initStatus, scheduled: true, claimedBy: WORKER, owner: null });
          states.push({ mode, status, initStatus, scheduled: true, claimedBy: "worker-2", owner: null });
        }
      }
    }
  }
  return states;
}

function expectedAllowed(move: ExpectedMove, state: StartState): boolean {
  if (!move.from.includes(state.status)) return false;
  if (move.needsInitStatus && move.needsInitStatus !== state.initStatus) return false;
  if (move.needsClaim === "none" && state.claimedBy) return false;
  if (move.needsClaim === "mine" && state.claimedBy !== WORKER) return false;
  if (move.needsOwner === "mine" && state.owner !== "me") return false;
  if (move.needsOwner === "no other" && state.owner === "other, lease holds") return false;
  return true;
}

describe.each(targets)("task status machine on $name", (target) => {
  let database: TestDatabase;
  const clock = new ManualClock();
  const changes: TaskChange[] = [];

  beforeAll(async () => {
    database = await target.open();
  });
  afterAll(() => database.close());

  const store = () =>
    createTaskStatusStore({
      db: database.db,
      clock,
      cleanupDelayMs: DELAY_MS,
      onChange: (c) => changes.push(c),
      ownerId: ME,
      ownerLeaseMs: 30_000,
    });

  /** Owner columns for `owner`, as of the test clock. */
  function ownerColumns(owner: Owner): Pick<TaskRow, "ownerId" | "ownerLeaseUntil"> {
    const now = clock.now().getTime();
    if (owner === null) return { ownerId: null, ownerLeaseUntil: null };
    if (owner === "me") return { ownerId: ME, ownerLeaseUntil: new Date(now + 10_000) };
    const until = owner === "other, lease holds" ? now + 10_000 : now - 1;
    return { ownerId: OTHER, ownerLeaseUntil: new Date(until) };
  }

  /** A task in `state`; a busy one is owned by the store under test unless said otherwise. */
  async function insertTask(state: Partial<TaskRow> & { mode?: TaskMode } = {}): Promise<TaskRow> {
    const now = clock.now();
    const busy = state.status === "INITIALIZING" || state.status === "RUNNING" || state.status === undefined;
    state = { ...(busy ? ownerColumns("me") : {}), ...state };
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

  /** `count` tasks in `state`, inserted in one statement. */
  async function insertStates(state: StartState, count: number): Promise<TaskRow[]> {
    const now = clock.now();
    const soon = new Date(now.getTime() + 1000);
    const row = {
      title: "t",
      repoUrl: "/repo",
      createdAt: now,
      updatedAt: now,
      mode: state.mode,
      status: state.status,
      initStatus: state.initStatus,
      scheduledCleanupAt: state.scheduled ? soon : null,
      cleanupClaimedBy: state.claimedBy,
      cleanupLeaseUntil: state.claimedBy ? soon : null,
      ...ownerColumns(state.owner),
    };
    return database.db
      .insert(tasks)
      .values(Array.from({ length: count }, () => ({ ...row, id: randomUUID() })))
      .returning();
  }

  function makeMove(s: TaskStatusStore, name: string, taskId: string): Promise<TaskRow | null> {
    switch (name) {
      case "completeTurn":
        return s.endTurn(taskId, "COMPLETED", null);
      case "failTurn":
        return s.endTurn(taskId, "FAILED", "agent failed");
      case "stopTurn":
        return s.endTurn(taskId, "STOPPED", "stopped");
      case "failInitialization":
        return s.failInitialization(taskId, "a step failed");
      case "stopInitialization":
        return s.stopInitialization(taskId, "stopped");
      case "interruptTurn":
        return s.interruptTurn(taskId, "interrupted");
      case "interruptTurnWorkspaceRemoved":
        return s.interruptTurn(taskId, "interrupted", { workspaceRemoved: true });
      case "archiveByCleanup":
        return s.archiveByCleanup(taskId, WORKER);
      case "archiveByUser":
        return s.archiveByUser(taskId);
      case "startTurn":
        return s.startTurn(taskId);
      case "startWarmFollowUp":
        return s.startWarmFollowUp(taskId);
      case "beginReinitialization":
        return s.beginReinitialization(taskId);
      default:
        throw new Error(`no such move in the test: ${name}`);
    }
  }

  it("makes every move of SPEC §1 from exactly the states it allows, with its effects; refuses the rest unchanged", async () => {
    const s = store();
    expect(Object.keys(TASK_MOVES).sort()).toEqual(Object.keys(SPEC_MOVES).sort());
    let allowed = 0;
    let refused = 0;
    for (const state of startStates()) {
      const moves = Object.entries(SPEC_MOVES);
      const rows = await insertStates(state, moves.length);
      for (const [index, [name, move]] of moves.entries()) {
        const row = rows[index]!;
        const result = await makeMove(s, name, row.id);
        const where = `${name} from ${state.mode} ${state.status}/${state.initStatus} scheduled=${state.scheduled} claim=${state.claimedBy} owner=${state.owner}`;
        if (!expectedAllowed(move, state)) {
          expect(result, where).toBeNull();
          expect(await readTask(row.id), where).toEqual(row);
          refused++;
          continue;
        }
        expect(result, where).not.toBeNull();
        const [status, initStatus] = move.to;
        expect(result!.status, where).toBe(status);
        expect(result!.initStatus, where).toBe(initStatus === "same" ? state.initStatus : initStatus);
        const warmWindow = state.mode === "remote" ? clock.now().getTime() + DELAY_MS : null;
        const expectedSchedule =
          move.schedule === "warm window"
            ? warmWindow
            : move.schedule === "kept"
              ? (row.scheduledCleanupAt?.getTime() ?? null)
              : null;
        expect(result!.scheduledCleanupAt?.getTime() ?? null, where).toBe(expectedSchedule);
        if (move.schedule === "none") expect(result!.cleanupClaimedBy, where).toBeNull();
        expect(result!.lastOutcome, where).toBe(move.outcome ?? row.lastOutcome);
        expect(result!.ownerId, where).toBe(move.ownerAfter === "me" ? ME : null);
        expect(result!.version, where).toBe(row.version + 1);
        allowed++;
      }
    }
    expect(allowed).toBeGreaterThan(60);
    expect(refused).toBeGreaterThan(400);
  }, 90_000);

  it("moves initStatus only to the next step of the mode, or back to INACTIVE when no turn runs", async () => {
    const s = store();
    for (const mode of ["remote", "local"] as const) {
      const order: InitStatus[] = ["INACTIVE", ...SPEC_STEPS[mode], "ACTIVE"];
      for (const status of TASK_STATUSES) {
        for (const from of INIT_STATUSES) {
          if (status === "ARCHIVED" && from !== "INACTIVE") continue;
          if (status === "RUNNING" && from !== "ACTIVE") continue;
          for (const to of INIT_STATUSES) {
            const row = await insertTask({ mode, status, initStatus: from });
            const next = order.indexOf(from) >= 0 ? order[order.indexOf(from) + 1] : undefined;
            const ok = to === "INACTIVE" ? status !== "RUNNING" : status === "INITIALIZING" && to === next;
            const result = await s.setInitStatus(row.id, to);
            const where = `${mode} ${status}/${from} → ${to}`;
            if (ok) {
              expect(result?.initStatus, where).toBe(to);
              expect(result?.status, where).toBe(status);
            } else {
              expect(result, where).toBeNull();
              expect(await readTask(row.id), where).toEqual(row);
            }
          }
        }
      }
    }
  }, 60_000);

  it("marks a workspace lost only while the task is still warm, the way a health sweep saw it", async () => {
    const s = store();
    const reason = "workspace stopped answering";
    for (const status of ["COMPLETED", "STOPPED", "FAILED"] as const) {
      const warm = await insertTask({ status, initStatus: "ACTIVE" });
      const lost = await s.setInitStatus(warm.id, "INACTIVE", { reason, whileWarm: true });
      expect([lost?.status, lost?.initStatus], status).toEqual([status, "INACTIVE"]);
    }
    // What the task may have become between the sweep's read and its write: each is left exactly as it is.
    const movedOn = [
      await insertTask({ status: "INITIALIZING", initStatus: "PREPARE_WORKSPACE" }),
      await insertTask({ status: "INITIALIZING", initStatus: "INACTIVE" }),
      await insertTask({ status: "ARCHIVED", initStatus: "INACTIVE" }),
      await insertTask({ status: "COMPLETED", initStatus: "INACTIVE" }),
      await insertTask({
        status: "COMPLETED",
        initStatus: "ACTIVE",
        cleanupClaimedBy: "cleanup:other",
        cleanupLeaseUntil: new Date(clock.now().getTime() + 60_000),
      }),
    ];
    for (const row of movedOn) {
      const where = `${row.status}/${row.initStatus}${row.cleanupClaimedBy ? " claimed" : ""}`;
      expect(await s.setInitStatus(row.id, "INACTIVE", { reason, whileWarm: true }), where).toBeNull();
      expect(await readTask(row.id), where).toEqual(row);
    }
  });

  it("lets only the owner move an initialization along, and anyone once no live process owns it", async () => {
    const s = store();
    const others = await insertTask({
      status: "INITIALIZING",
      initStatus: "INACTIVE",
      ...ownerColumns("other, lease holds"),
    });
    expect(await s.setInitStatus(others.id, "CREATE_VM")).toBeNull();
    expect(await s.setInitStatus(others.id, "INACTIVE")).toBeNull();
    expect(await s.failInitialization(others.id, "not mine")).toBeNull();
    expect(await readTask(others.id)).toEqual(others);
    const expired = await insertTask({
      status: "INITIALIZING",
      initStatus: "INACTIVE",
      ...ownerColumns("other, lease expired"),
    });
    expect(await s.setInitStatus(expired.id, "CREATE_VM")).toBeNull(); // an expired owner must be taken over first
    expect((await s.archiveByUser(expired.id))?.ownerId).toBeNull();
  });

  it("writes a history row for each field a move changes, in the same transaction", async () => {
    const s = store();
    const row = await insertTask({ status: "INITIALIZING", initStatus: "INDEX_REPOSITORY" });
    await s.failInitialization(row.id, "step failed");
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

  it("moves a warm follow-up over the row its caller read, as the locked write would", async () => {
    const s = store();
    const historyOf = async (id: string) =>
      (
        await database.db
          .select()
          .from(taskStatusHistory)
          .where(eq(taskStatusHistory.taskId, id))
          .orderBy(asc(taskStatusHistory.id))
      ).map((h) => [h.field, h.fromValue, h.toValue, h.at.getTime(), h.reason]);
    const warmState = {
      status: "COMPLETED",
      initStatus: "ACTIVE",
      errorMessage: "the last turn's error",
      scheduledCleanupAt: new Date(clock.now().getTime() + 1000),
    } as const;
    const locked = await insertTask(warmState);
    const seen = await insertTask(warmState);
    changes.length = 0;
    const byLock = await s.startWarmFollowUp(locked.id);
    const transactions = vi.spyOn(database.db, "transaction");
    const bySeen = await s.startWarmFollowUp(seen.id, seen);
    expect(transactions).not.toHaveBeenCalled(); // one statement, no locked read
    transactions.mockRestore();
    expect(bySeen).toEqual({ ...byLock, id: seen.id });
    expect(await readTask(seen.id)).toEqual(bySeen);
    expect(await historyOf(seen.id)).toEqual(await historyOf(locked.id));
    expect(changes.map((c) => [c.task, c.previous])).toEqual([
      [byLock, locked],
      [bySeen, seen],
    ]);

    // A row read before the cleanup claimed it: the move is decided on the row as it is now, and refused.
    const stale = await insertTask(warmState);
    const [claimed] = await database.db
      .update(tasks)
      .set({ cleanupClaimedBy: "worker-1", cleanupLeaseUntil: new Date(clock.now().getTime() + 60_000) })
      .where(eq(tasks.id, stale.id))
      .returning();
    expect(await s.startWarmFollowUp(stale.id, stale)).toBeNull();
    expect(await readTask(stale.id)).toEqual(claimed);
    expect(await historyOf(stale.id)).toEqual([]);

    // A row read before an unrelated write (its version moved on): still warm, so it moves, once.
    const older = await insertTask(warmState);
    await database.db
      .update(tasks)
      .set({ version: older.version + 1 })
      .where(eq(tasks.id, older.id));
    const moved = await s.startWarmFollowUp(older.id, older);
    expect([moved?.status, moved?.version]).toEqual(["RUNNING", older.version + 2]);
    expect(await historyOf(older.id)).toHaveLength(2);

    // A row read while it was busy: refused on it, then decided again (and refused) on the row as it is.
    const running = await insertTask({ status: "RUNNING", initStatus: "ACTIVE" });
    expect(await s.startWarmFollowUp(running.id, running)).toBeNull();
    expect(await readTask(running.id)).toEqual(running);
  });

  it("reports a missing task as NotFoundError", async () => {
    await expect(store().startTurn(randomUUID())).rejects.toBeInstanceOf(NotFoundError);
  });

  it("walks the seed's lifecycle and emits each change after commit, in order", async () => {
    const s = store();
    changes.length = 0;
    const task = await s.createTask({ id: randomUUID(), title: "lifecycle", mode: "remote", repoUrl: "/repo" });
    expect([task.status, task.initStatus, task.scheduledCleanupAt]).toEqual(["INITIALIZING", "INACTIVE", null]);
    const walk = [
      "CREATE_VM",
      "WAIT_VM_READY",
      "VERIFY_VM_WORKSPACE",
      "INSTALL_DEPENDENCIES",
      "INDEX_REPOSITORY",
      "ACTIVE",
    ] as const;
    for (const step of walk) {
      expect((await s.setInitStatus(task.id, step))?.initStatus).toBe(step);
    }
    expect((await s.startTurn(task.id))?.status).toBe("RUNNING");
    const completed = await s.endTurn(task.id, "COMPLETED", null);
    expect(completed?.scheduledCleanupAt?.getTime()).toBe(clock.now().getTime() + 600_000);
    const warm = await s.startWarmFollowUp(task.id);
    expect([warm?.status, warm?.initStatus, warm?.scheduledCleanupAt]).toEqual(["RUNNING", "ACTIVE", null]);
    await s.endTurn(task.id, "COMPLETED", null);
    const scheduled = await s.scheduleTaskCleanup(task.id, 5);
    expect(scheduled?.scheduledCleanupAt?.getTime()).toBe(clock.now().getTime() + 300_000);
    const archived = await s.archiveByUser(task.id);
    expect([archived?.status, archived?.initStatus, archived?.scheduledCleanupAt]).toEqual([
      "ARCHIVED",
      "INACTIVE",
      null,
    ]);
    const reinit = await s.beginReinitialization(task.id);
    expect([reinit?.status, reinit?.initStatus]).toEqual(["INITIALIZING", "INACTIVE"]);
    expect(changes.map((c) => `${c.task.status}/${c.task.initStatus}`)).toEqual([
      "INITIALIZING/CREATE_VM",
      "INITIALIZING/WAIT_VM_READY",
      "INITIALIZING/VERIFY_VM_WORKSPACE",
      "INITIALIZING/INSTALL_DEPENDENCIES",
      "INITIALIZING/INDEX_REPOSITORY",
      "INITIALIZING/ACTIVE",
      "RUNNING/ACTIVE",
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
        expect((await s.scheduleTaskCleanup(row.id, 0.5))?.scheduledCleanupAt?.getTime()).toBe(
          clock.now().getTime() + 30_000,
        );
      } else {
        expect(await s.scheduleTaskCleanup(row.id, 10)).toBeNull();
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
    expect(await s.cancelTaskCleanup(claimed.id)).toBeNull();
    expect(await s.startWarmFollowUp(claimed.id)).toBeNull();
    expect(await readTask(claimed.id)).toEqual(claimed);

    const free = await insertTask({ status: "COMPLETED", initStatus: "ACTIVE", scheduledCleanupAt: at });
    expect((await s.cancelTaskCleanup(free.id))?.scheduledCleanupAt).toBeNull();
  });

  it("keeps the invariants: provisioning steps only while INITIALIZING, no INACTIVE under a running agent", async () => {
    const s = store();
    const running = await insertTask({ status: "RUNNING", initStatus: "ACTIVE" });
    expect(await s.setInitStatus(running.id, "INACTIVE")).toBeNull();
    expect(await s.setInitStatus(running.id, "CREATE_VM")).toBeNull();
    expect(await readTask(running.id)).toEqual(running);

    const warm = await insertTask({
      status: "COMPLETED",
      initStatus: "ACTIVE",
      scheduledCleanupAt: new Date(clock.now().getTime() + 1000),
    });
    const dead = await s.setInitStatus(warm.id, "INACTIVE", { reason: "sandbox died" });
    expect([dead?.status, dead?.initStatus, dead?.scheduledCleanupAt]).toEqual(["COMPLETED", "INACTIVE", null]);
  });
});

describe.runIf(targets.some((t) => t.name === "postgres"))("compare-and-set across connections", () => {
  it("lets exactly one of two racing writers win", async () => {
    const target = targets.find((t) => t.name === "postgres")!;
    const database = await target.open();
    const second = await openDatabase({ databaseUrl: database.url! });
    const clock = new ManualClock();
    try {
      const a = createTaskStatusStore({ db: database.db, clock, cleanupDelayMs: DELAY_MS });
      const b = createTaskStatusStore({ db: second.db, clock, cleanupDelayMs: DELAY_MS });
      for (let round = 0; round < 25; round++) {
        const task = await warmTask(a);
        await a.setInitStatus(task.id, "INACTIVE");
        // Two follow-ups race to re-initialize the same idle task.
        const results = await Promise.all([a.beginReinitialization(task.id), b.beginReinitialization(task.id)]);
        expect(results.filter((r) => r !== null)).toHaveLength(1);
        const history = await database.db.select().from(taskStatusHistory).where(eq(taskStatusHistory.taskId, task.id));
        expect(history.filter((h) => h.toValue === "INITIALIZING" && h.fromValue === "COMPLETED")).toHaveLength(1);
      }
    } finally {
      await second.close();
      await database.close();
    }
  });
});
