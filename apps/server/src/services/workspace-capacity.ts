/**
 * The cap on live workspaces (MAX_ACTIVE_WORKSPACES), remote mode: a task
 * that needs a new workspace — a new task, or a follow-up that must
 * re-initialize — gets one only while fewer than `max` are live.
 *
 * Live = being made (INITIALIZING) or made (initStatus other than INACTIVE).
 * At the cap, the least recently used *warm* workspace (ACTIVE, at rest, not
 * being cleaned up) is cleaned up early, through the cleanup service's own
 * path: `scheduleTaskCleanup(id, 0)` makes it due now, the service claims it,
 * saves its work, destroys it and archives the task; the request waits for
 * that. When every live workspace is busy the request is refused at once with
 * CapacityError (429, Retry-After) — never a silent wait.
 *
 * Invariants:
 * - In this process, checking for room and taking it (the caller's move to
 *   INITIALIZING) happen under one lock, so two requests never take the last
 *   slot together. Servers sharing a database count the same rows, but each
 *   takes its slot on its own: the cap holds per server, loosely across them.
 * - A follow-up that reaches the chosen workspace before its cleanup wins
 *   (the schedule is cancelled in its write); the next warm one is chosen.
 * - Nothing here writes a status: eviction is the cleanup service's move.
 */
import { type Db, queryRows, type TaskRow } from "@repo/db";
import { InitStatus, isBusy, type TaskMode } from "@repo/types";
import { sql } from "drizzle-orm";
import { CapacityError } from "../errors";
import type { Logger } from "../logger";
import { KeyedMutex } from "../utils/keyed-mutex";
import type { TaskChanges } from "../utils/task-changes";
import type { TaskStatusStore } from "../utils/task-status";
import type { TaskRepository } from "./task-repository";

/** When a refused request may try again, seconds: about the time a short turn takes to end. */
const RETRY_AFTER_SECONDS = 15;

export interface WorkspaceCapacityDeps {
  db: Db;
  mode: TaskMode;
  /** MAX_ACTIVE_WORKSPACES; null = no cap (local mode). */
  max: number | null;
  tasks: TaskRepository;
  status: TaskStatusStore;
  changes: TaskChanges;
  /** Runs a cleanup pass now (the cleanup service's trigger). */
  runCleanup(): Promise<void>;
  log: Logger;
  /** Longest wait for an early cleanup, ms. Default 120000. */
  evictionTimeoutMs?: number;
  /** How often a wait re-reads the task (another server may clean it up), ms. Default 250. */
  pollMs?: number;
  onEvicted?(taskId: string): void;
  onRefused?(): void;
}

export class WorkspaceCapacity {
  private readonly lock = new KeyedMutex();

  constructor(private readonly deps: WorkspaceCapacityDeps) {}

  get max(): number | null {
    return this.deps.max;
  }

  /** Live workspaces of this server's mode. */
  async active(): Promise<number> {
    const [row] = await queryRows<{ n: number }>(
      this.deps.db,
      sql`SELECT count(*)::int AS n FROM tasks
          WHERE mode = ${this.deps.mode} AND (status = 'INITIALIZING' OR init_status <> 'INACTIVE')`,
    );
    return row?.n ?? 0;
  }

  /**
   * Runs `take` (which moves a task to INITIALIZING) once there is room for
   * one more workspace, making room first when needed. CapacityError when
   * every live workspace is busy, or when making room takes too long.
   */
  withRoom<T>(take: () => Promise<T>): Promise<T> {
    if (this.deps.max === null) return take();
    return this.lock.run("room", async () => {
      await this.makeRoom(this.deps.max!);
      return take();
    });
  }

  private async makeRoom(max: number): Promise<void> {
    const deadline = Date.now() + (this.deps.evictionTimeoutMs ?? 120_000);
    for (;;) {
      const active = await this.active();
      if (active < max) return;
      const victim = await this.leastRecentlyUsedWarm();
      if (!victim) {
        this.deps.onRefused?.();
        throw new CapacityError(
          `all ${max} workspaces are busy (MAX_ACTIVE_WORKSPACES=${max}); try again when a task finishes`,
          RETRY_AFTER_SECONDS,
        );
      }
      const log = this.deps.log.child({ taskId: victim.id });
      const scheduled = await this.deps.status.scheduleTaskCleanup(victim.id, 0, {
        reason: `cleaned up early: ${active} of ${max} workspaces were live and another task needed one`,
      });
      if (!scheduled) continue; // a follow-up or a cleanup moved it first
      log.info({ active, max }, "capacity.evicting");
      void this.deps.runCleanup();
      const outcome = await this.waitUntilNotLive(victim.id, deadline);
      if (outcome === "timeout") {
        this.deps.onRefused?.();
        throw new CapacityError(
          `all ${max} workspaces are in use and cleaning up the least recently used one is taking too long; try again shortly`,
          RETRY_AFTER_SECONDS,
        );
      }
      if (outcome === "cleaned") {
        log.info("capacity.evicted");
        this.deps.onEvicted?.(victim.id);
      }
    }
  }

  /** The warm workspace used longest ago: ACTIVE, at rest, no cleanup holding it. */
  private async leastRecentlyUsedWarm(): Promise<{ id: string } | null> {
    const [row] = await queryRows<{ id: string }>(
      this.deps.db,
      sql`SELECT id FROM tasks
          WHERE mode = ${this.deps.mode} AND init_status = 'ACTIVE'
            AND status IN ('COMPLETED', 'STOPPED', 'FAILED') AND cleanup_claimed_by IS NULL
          ORDER BY updated_at, id LIMIT 1`,
    );
    return row ?? null;
  }

  /** Waits until the task's workspace is gone (`cleaned`; deleted counts) or a follow-up took it (`taken`). */
  private async waitUntilNotLive(taskId: string, deadline: number): Promise<"cleaned" | "taken" | "timeout"> {
    const settled = (task: TaskRow) => task.initStatus === InitStatus.INACTIVE || isBusy(task);
    for (;;) {
      const task = await this.deps.tasks.find(taskId);
      if (!task || task.initStatus === InitStatus.INACTIVE) return "cleaned";
      if (isBusy(task)) return "taken";
      const left = deadline - Date.now();
      if (left <= 0) return "timeout";
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, this.deps.pollMs ?? 250));
        const unsubscribe = this.deps.changes.subscribe((change) => {
          if (change.task.id === taskId && settled(change.task)) done();
        });
        function done() {
          clearTimeout(timer);
          unsubscribe();
          resolve();
        }
      });
    }
  }
}
