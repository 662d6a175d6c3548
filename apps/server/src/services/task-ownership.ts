/**
 * Ownership of running work: which server process runs a task's
 * initialization or turn, recorded in the task row (`ownerId`,
 * `ownerLeaseUntil`). Everything about it lives here — renewing the leases of
 * the work this process runs (the heartbeat), finding work whose owner is
 * gone, taking it over, and when to look again.
 *
 * Invariants:
 * - The moves that start work take the ownership in the same write, the
 *   moves that end it release it (utils/task-moves.ts); only the owner moves
 *   its work along. So at most one process runs a task's work, and a process
 *   that lost its lease (it froze, or lost the database) cannot write over
 *   the process that took the work over.
 * - A lease is renewed only for work this process really runs: a task owned
 *   by a process that no longer runs it (a crash, a bug) is taken over once
 *   its lease ends, by any process, this one included.
 * - Work owned by a process of this host that no longer runs is taken over at
 *   once; other hosts' work only once its lease has run out. Work with no
 *   owner at all (written before ownership existed, or given up at a graceful
 *   shutdown) is taken over at once.
 * - A take-over is one guarded write (the lease must still be expired, or
 *   the dead owner still the owner): of several processes, one wins.
 * - "Owner" means this and nothing else; "claim" is the cleanup's lease.
 */
import { type Db, queryRows, type TaskRow, tasks } from "@repo/db";
import { TaskStatus } from "@repo/types";
import { and, eq, inArray, isNull, sql } from "drizzle-orm";
import type { Logger } from "../logger";
import type { Clock, TimerHandle } from "../utils/clock";
import { isGoneOnThisHost } from "../utils/process-identity";
import type { TaskStatusStore } from "../utils/task-status";

const BUSY: TaskStatus[] = [TaskStatus.INITIALIZING, TaskStatus.RUNNING];

export interface TaskOwnershipDeps {
  db: Db;
  clock: Clock;
  status: TaskStatusStore;
  /** How often leases are renewed and expired ones looked for, in ms (OWNER_HEARTBEAT_MS). */
  heartbeatMs: number;
  /** Ids of the tasks whose work runs in this process now. */
  runningHere(): string[];
  /** This process lost the ownership of work it runs (another process took it over): abandon it. */
  onLost(taskId: string): void;
  /** Carries on (or ends) the work of a task this process has just taken over. Must not throw. */
  onTakenOver(task: TaskRow, previousOwner: string | null): Promise<void>;
  log: Logger;
  /** Counts for /metrics. */
  onHeartbeat?(owned: number): void;
  onTakeOver?(): void;
}

export class TaskOwnership {
  private timer: TimerHandle | null = null;
  private pass: Promise<unknown> | null = null;
  private readonly takingOver = new Set<string>();
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = true;
  private draining = false;

  constructor(private readonly deps: TaskOwnershipDeps) {}

  get ownerId(): string {
    return this.deps.status.ownerId;
  }

  /** Starts the heartbeat and the take-over sweep (the first pass runs at once). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  /** Takes nothing over from now on (the process is shutting down); leases are still renewed. */
  drain(): void {
    this.draining = true;
  }

  /** Stops the timer; waits for the pass and the take-overs in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
    await this.pass;
    await Promise.all([...this.inFlight]);
  }

  /**
   * One pass: renews this process's leases, then takes over work whose owner
   * is gone (each take-over goes on in the background). Returns the ids taken over.
   */
  async runOnce(): Promise<string[]> {
    await this.heartbeat();
    const taken: string[] = [];
    if (this.draining) return taken;
    for (const candidate of await this.expired()) {
      if (this.takingOver.has(candidate.id)) continue;
      const task = await this.takeOver(candidate);
      if (!task) continue;
      taken.push(task.id);
      this.deps.onTakeOver?.();
      this.deps.log.warn(
        { taskId: task.id, status: task.status, previousOwner: candidate.ownerId },
        "ownership.taken_over",
      );
      this.takingOver.add(task.id);
      const work: Promise<void> = this.deps
        .onTakenOver(task, candidate.ownerId)
        .catch((error) => this.deps.log.error({ taskId: task.id, err: error }, "ownership.takeover.failed"))
        .finally(() => {
          this.takingOver.delete(task.id);
          this.inFlight.delete(work);
        });
      this.inFlight.add(work);
    }
    return taken;
  }

  /** Resolves when the take-overs started so far have finished. */
  async whenIdle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /**
   * Renews the lease of every task whose work runs here. Work this process
   * runs but no longer owns was taken over: it is abandoned. Returns how many
   * tasks this process owns.
   */
  async heartbeat(): Promise<number> {
    const running = this.deps.runningHere();
    if (running.length === 0) {
      this.deps.onHeartbeat?.(0);
      return 0;
    }
    const until = new Date(this.deps.clock.now().getTime() + this.deps.status.ownerLeaseMs);
    const renewed = await this.deps.db
      .update(tasks)
      .set({ ownerLeaseUntil: until })
      .where(and(eq(tasks.ownerId, this.ownerId), inArray(tasks.id, running)))
      .returning({ id: tasks.id });
    const owned = new Set(renewed.map((row) => row.id));
    for (const taskId of running) {
      // Still running here: recheck, the work may have ended (and released) between the list and the write.
      if (owned.has(taskId) || !this.deps.runningHere().includes(taskId)) continue;
      const [row] = await this.deps.db.select().from(tasks).where(eq(tasks.id, taskId));
      if (row && row.ownerId !== this.ownerId && BUSY.includes(row.status)) {
        this.deps.log.warn({ taskId, owner: row.ownerId }, "ownership.lost");
        this.deps.onLost(taskId);
      }
    }
    this.deps.onHeartbeat?.(owned.size);
    return owned.size;
  }

  /** Busy tasks whose owner is gone: lease expired, no owner, or a dead process of this host. */
  async expired(): Promise<TaskRow[]> {
    const now = this.deps.clock.now();
    const running = new Set(this.deps.runningHere());
    // Every busy task: a dead owner of this host is told by its id, not by a column.
    const rows = await this.deps.db.select().from(tasks).where(inArray(tasks.status, BUSY));
    return rows.filter(
      (row) =>
        !running.has(row.id) &&
        (row.ownerId === null ||
          (row.ownerLeaseUntil !== null && row.ownerLeaseUntil.getTime() < now.getTime()) ||
          (row.ownerId !== this.ownerId && isGoneOnThisHost(row.ownerId))),
    );
  }

  /**
   * Takes the task's work over for this process when its owner is still the
   * one that is gone: one guarded write. Null when another process moved first.
   */
  takeOver(task: Pick<TaskRow, "id" | "ownerId">): Promise<TaskRow | null> {
    const previous = task.ownerId;
    const { status } = this.deps;
    return status.write(task.id, undefined, (row, now) => {
      if (!BUSY.includes(row.status) || row.ownerId !== previous) return { refused: "the work moved on" };
      const expired =
        row.ownerId === null ||
        (row.ownerLeaseUntil !== null && row.ownerLeaseUntil.getTime() < now.getTime()) ||
        (row.ownerId !== this.ownerId && isGoneOnThisHost(row.ownerId));
      if (!expired) return { refused: "the owner's lease holds" };
      return {
        update: { ownerId: this.ownerId, ownerLeaseUntil: new Date(now.getTime() + status.ownerLeaseMs) },
        guard: and(
          inArray(tasks.status, BUSY),
          previous === null ? isNull(tasks.ownerId) : eq(tasks.ownerId, previous),
        ),
      };
    });
  }

  /**
   * Gives up the ownership of work this process stopped without ending (an
   * initialization interrupted by a graceful shutdown), so another process
   * takes it over at once instead of after the lease.
   */
  async release(taskIds: string[]): Promise<void> {
    if (taskIds.length === 0) return;
    await this.deps.db
      .update(tasks)
      .set({ ownerId: null, ownerLeaseUntil: null })
      .where(and(eq(tasks.ownerId, this.ownerId), inArray(tasks.id, taskIds)));
  }

  /** When the next lease of another process runs out, or null. */
  async nextExpiry(): Promise<Date | null> {
    const [row] = await queryRows<{ at: string | Date | null }>(
      this.deps.db,
      sql`SELECT min(owner_lease_until) AS at FROM tasks WHERE owner_id IS NOT NULL AND owner_id <> ${this.ownerId}`,
    );
    return row?.at ? new Date(row.at) : null;
  }

  /** Runs a pass after `ms`, then the next one at the heartbeat or just after the next foreign lease ends. */
  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = this.deps.clock.setTimer(() => {
      this.pass = (async () => {
        let next = this.deps.heartbeatMs;
        try {
          await this.runOnce();
          const expiry = await this.nextExpiry();
          if (expiry) next = Math.min(next, Math.max(1, expiry.getTime() - this.deps.clock.now().getTime() + 1));
        } catch (error) {
          this.deps.log.error({ err: error }, "ownership.pass.failed");
        }
        this.schedule(next);
      })();
    }, ms);
  }
}
