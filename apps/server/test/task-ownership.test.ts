/**
 * Ownership of running work, driven with a manual clock: leases renewed only
 * for work that really runs here, work of another host taken over only once
 * its lease has run out (and exactly once among several takers), a process
 * that lost its lease told so, and nothing taken over while draining.
 */
import type { TaskRow } from "@repo/db";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { runningTask } from "../../../test/support/task-states";
import { createLogger } from "../src/logger";
import { createTaskCore } from "../src/services/task-core";
import { TaskOwnership } from "../src/services/task-ownership";
import { ManualClock } from "../src/utils/clock";

const targets = await databaseTargets();
const LEASE_MS = 10_000;
/** An owner on another host: only its lease tells whether it lives. */
const FAR_AWAY = "replica:far-away-host:4242.99:0badc0de";

/**
 * A clock per test, each starting a day before the previous one: the leases
 * earlier tests left in the shared database lie in a later test's future, so
 * no test takes over another's work.
 */
let testsSoFar = 0;
const freshClock = () => new ManualClock(Date.UTC(2026, 0, 28) - ++testsSoFar * 86_400_000);

describe.each(targets)("task ownership on $name", (target) => {
  let database: TestDatabase;
  const log = createLogger("silent");
  beforeAll(async () => {
    database = await target.open();
  });
  afterAll(() => database.close());

  function replica(clock: ManualClock, ownerId: string) {
    const core = createTaskCore({
      db: database.db,
      clock,
      cleanupDelayMs: 60_000,
      log,
      ownerId,
      ownerLeaseMs: LEASE_MS,
    });
    const running = new Set<string>();
    const lost: string[] = [];
    const takenOver: [string, string | null][] = [];
    const ownership = new TaskOwnership({
      db: database.db,
      clock,
      status: core.status,
      heartbeatMs: 1000,
      runningHere: () => [...running],
      onLost: (taskId) => lost.push(taskId),
      onTakenOver: async (task: TaskRow, previous) => {
        takenOver.push([task.id, previous]);
      },
      log,
    });
    return { core, ownership, running, lost, takenOver };
  }

  it("takes over work of another host only after its lease ran out, and only one taker wins", async () => {
    const clock = freshClock();
    const far = replica(clock, FAR_AWAY);
    const task = await runningTask(far.core.status);
    expect(task.ownerId).toBe(FAR_AWAY);
    const b = replica(clock, "replica-b");
    const c = replica(clock, "replica-c");

    clock.advance(LEASE_MS - 1);
    expect(await b.ownership.runOnce()).toEqual([]);
    clock.advance(2);
    const [byB, byC] = await Promise.all([b.ownership.runOnce(), c.ownership.runOnce()]);
    expect([...byB, ...byC]).toEqual([task.id]);
    const winner = byB.length > 0 ? b : c;
    expect(winner.takenOver).toEqual([[task.id, FAR_AWAY]]);
    const row = await winner.core.tasks.get(task.id);
    expect([row.status, row.ownerId]).toEqual(["RUNNING", byB.length > 0 ? "replica-b" : "replica-c"]);
    expect(row.ownerLeaseUntil?.getTime()).toBe(clock.now().getTime() + LEASE_MS);
  });

  it("renews the lease of work running here, so a live owner is never taken over", async () => {
    const clock = freshClock();
    const a = replica(clock, "replica-a");
    const b = replica(clock, "replica-b");
    const task = await runningTask(a.core.status);
    a.running.add(task.id);
    for (let i = 0; i < 5; i++) {
      clock.advance(LEASE_MS / 2);
      expect(await a.ownership.heartbeat()).toBe(1);
      expect(await b.ownership.runOnce()).toEqual([]);
    }
    expect((await a.core.tasks.get(task.id)).ownerId).toBe("replica-a");
  });

  it("does not renew a lease for work this process owns but no longer runs: it is taken over when it lapses", async () => {
    const clock = freshClock();
    const a = replica(clock, "replica-a");
    const task = await runningTask(a.core.status); // owned, but nothing runs it here
    expect(await a.ownership.heartbeat()).toBe(0);
    clock.advance(LEASE_MS + 1);
    expect(await a.ownership.runOnce()).toEqual([task.id]);
    expect(a.takenOver).toEqual([[task.id, "replica-a"]]);
  });

  it("tells a process that its work was taken over while it froze", async () => {
    const clock = freshClock();
    const a = replica(clock, "replica-a");
    const b = replica(clock, "replica-b");
    const task = await runningTask(a.core.status);
    a.running.add(task.id);
    clock.advance(LEASE_MS + 1); // A missed every heartbeat
    expect(await b.ownership.runOnce()).toEqual([task.id]);
    expect(await a.ownership.heartbeat()).toBe(0);
    expect(a.lost).toEqual([task.id]);
    expect(await a.core.status.endTurn(task.id, "COMPLETED", null)).toBeNull();
  });

  it("takes work with no owner at all over at once, and nothing while draining", async () => {
    const clock = freshClock();
    const a = replica(clock, "replica-a");
    const b = replica(clock, "replica-b");
    const task = await runningTask(a.core.status);
    await a.ownership.release([task.id]);
    b.ownership.drain();
    expect(await b.ownership.runOnce()).toEqual([]);
    expect(await a.ownership.runOnce()).toEqual([task.id]);
  });
});
