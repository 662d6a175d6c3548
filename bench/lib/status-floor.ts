/**
 * The floor of a warm follow-up: the one guarded status move it cannot do
 * without (COMPLETED → RUNNING on an ACTIVE workspace, a compare-and-set
 * UPDATE with its history row, in one statement over the row just read, as
 * the follow-up makes it), made by the server's own status store on the
 * bench server's own database, so that it pays what the follow-up pays for
 * its write and nothing else. The read before it is not counted.
 *
 * It moves a task of its own: a local-mode task (no warm window, so no
 * cleanup ever looks at it), moved by a store that has no listener (no event
 * goes out) as an owner of its own with a long lease. Between samples the
 * task rests RUNNING, which the server's recovery leaves to its live owner:
 * resting COMPLETED / ACTIVE with no workspace, the health sweep would find
 * its workspace gone and make it INACTIVE. It is deleted at the end.
 */
import { randomUUID } from "node:crypto";
import { tasks } from "@repo/db";
import { getStepsForMode, InitStatus, TaskStatus } from "@repo/types";
import { eq } from "drizzle-orm";
import { systemClock } from "../../apps/server/src/utils/clock";
import { createTaskStatusStore } from "../../apps/server/src/utils/task-status";
import type { BenchServer } from "./server";

/** Longer than any section runs: the floor task's owner never lets its lease lapse. */
const LEASE_MS = 6 * 60 * 60 * 1000;

export interface StatusMoveFloor {
  /** Milliseconds of one guarded move with its history row (the move back is not counted). */
  sample(): Promise<number>;
  remove(): Promise<void>;
}

export async function statusMoveFloor(s: BenchServer): Promise<StatusMoveFloor> {
  const db = s.t.server.database.db;
  const status = createTaskStatusStore({ db, clock: systemClock, cleanupDelayMs: 0, ownerLeaseMs: LEASE_MS });
  const id = randomUUID();
  await status.createTask({ id, title: "status move floor", mode: "local", repoUrl: "/nonexistent/floor" });
  for (const step of getStepsForMode("local")) await must(status.setInitStatus(id, step), step);
  await must(status.setInitStatus(id, InitStatus.ACTIVE), InitStatus.ACTIVE);
  await must(status.startTurn(id), "startTurn");
  return {
    async sample() {
      const seen = await must(status.endTurn(id, TaskStatus.COMPLETED, null), "endTurn");
      const started = performance.now();
      await must(status.startWarmFollowUp(id, seen), "startWarmFollowUp");
      return performance.now() - started;
    },
    async remove() {
      await db.delete(tasks).where(eq(tasks.id, id));
    },
  };
}

async function must<T>(move: Promise<T | null>, what: string): Promise<T> {
  const moved = await move;
  if (!moved) throw new Error(`the floor task's move was refused: ${what}`);
  return moved;
}
