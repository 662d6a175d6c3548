/**
 * Recovery from a dead server process, and the watch that keeps warm
 * workspaces honest.
 *
 * At start-up (before the API opens):
 * - processes the dead server left running in the data directory (git in
 *   the repository store, agent commands in local workspaces) are ended
 *   first, so they cannot race what follows (see orphan-processes.ts);
 * - a cleanup claim held by a process of this host that no longer runs is
 *   released, so the cleanup runs again now instead of after its lease;
 * - a task left INITIALIZING restarts its initialization from scratch, with
 *   the last user message, after removing what the dead run had created;
 * - a task left RUNNING is marked STOPPED with an explanation; in local mode
 *   whatever its agent had written is committed to the task branch first;
 * - a VM session whose sandbox no longer exists is ended and its task set
 *   INACTIVE, so the next follow-up re-initializes.
 * At start-up and then periodically:
 * - sandboxes labelled as Umbra's that no task owns (no active VM session,
 *   task gone) are destroyed — orphans of crashes between creating a sandbox
 *   and recording it;
 * - warm workspaces are probed; one that died sets its task INACTIVE.
 *
 * Start-up recovery assumes one server process owns the INITIALIZING and
 * RUNNING tasks of the database (several processes share cleanup safely,
 * through claims, but not in-flight turns).
 */
import { type Db, type TaskRow, tasks, vmSessions } from "@repo/db";
import { InitStatus, TaskStatus } from "@repo/types";
import { and, eq, inArray } from "drizzle-orm";
import { errorMessage } from "../errors";
import type { WorkspaceManager } from "../execution/types";
import { UMBRA_LABELS, UMBRA_MANAGED_BY, type VmProvider } from "../execution/vm/types";
import type { Logger } from "../logger";
import type { Clock, TimerHandle } from "../utils/clock";
import type { TaskStatusStore } from "../utils/task-status";
import type { CleanupClaims } from "./cleanup-claims";
import type { MessageLog } from "./message-log";
import { endOrphanedProcesses } from "./orphan-processes";

export const INTERRUPTED_TURN_MESSAGE =
  "The server stopped while the agent was working; the turn was interrupted. Send a follow-up to continue.";

export interface TaskRecoveryDeps {
  db: Db;
  clock: Clock;
  status: TaskStatusStore;
  workspaces: WorkspaceManager;
  /** The VM provider in remote mode; null in local mode. */
  provider: VmProvider | null;
  messages: MessageLog;
  claims: CleanupClaims;
  /** Restarts initialization and the turn for `message` of a task left INITIALIZING / INACTIVE. */
  restart(task: TaskRow, message: string): Promise<void>;
  /** True while this process runs an initialization or a turn for the task. */
  isActive(taskId: string): boolean;
  log: Logger;
  /** Period of the orphan and health sweeps, in ms. */
  intervalMs: number;
  /** The server's data directory, searched for processes of a dead server at start-up. Unset: no search. */
  dataDir?: string;
}

export interface RecoveryReport {
  endedProcesses: number[];
  releasedClaims: string[];
  restartedInitializations: string[];
  stoppedTurns: string[];
  endedSessions: string[];
  reapedOrphans: string[];
  deadWorkspaces: string[];
}

export class TaskRecovery {
  private timer: TimerHandle | null = null;
  private sweeping: Promise<unknown> | null = null;

  constructor(private readonly deps: TaskRecoveryDeps) {}

  /** Recovers what a dead process left behind. Run once, before serving requests. */
  async recoverAtStartup(): Promise<RecoveryReport> {
    const report: RecoveryReport = {
      endedProcesses: [],
      releasedClaims: [],
      restartedInitializations: [],
      stoppedTurns: [],
      endedSessions: [],
      reapedOrphans: [],
      deadWorkspaces: [],
    };
    if (this.deps.dataDir) {
      report.endedProcesses = await endOrphanedProcesses(this.deps.dataDir);
      if (report.endedProcesses.length > 0) {
        this.deps.log.warn({ pids: report.endedProcesses }, "recovery.orphan_processes.ended");
      }
    }
    report.releasedClaims = await this.deps.claims.releaseClaimsOfDeadWorkers();
    const stuck = await this.deps.db
      .select()
      .from(tasks)
      .where(inArray(tasks.status, [TaskStatus.INITIALIZING, TaskStatus.RUNNING]));
    for (const task of stuck) {
      try {
        if (task.status === TaskStatus.RUNNING) {
          await this.stopInterruptedTurn(task);
          report.stoppedTurns.push(task.id);
        } else {
          await this.restartInitialization(task);
          report.restartedInitializations.push(task.id);
        }
      } catch (error) {
        this.deps.log.error({ taskId: task.id, err: error }, "recovery.task.failed");
      }
    }
    report.endedSessions = await this.endSessionsOfMissingSandboxes();
    report.reapedOrphans = await this.reapOrphans();
    this.deps.log.info({ report }, "recovery.startup.done");
    return report;
  }

  /** Starts the periodic orphan and health sweeps. */
  start(): void {
    const tick = () => {
      this.timer = this.deps.clock.setTimer(() => {
        this.sweeping = this.sweep().finally(tick);
      }, this.deps.intervalMs);
    };
    tick();
  }

  async stop(): Promise<void> {
    this.timer?.cancel();
    this.timer = null;
    await this.sweeping;
  }

  /** One periodic pass: dead warm workspaces, then orphans. */
  async sweep(): Promise<Pick<RecoveryReport, "deadWorkspaces" | "reapedOrphans">> {
    const deadWorkspaces = await this.markDeadWorkspaces().catch((error) => {
      this.deps.log.error({ err: error }, "recovery.health.failed");
      return [];
    });
    const reapedOrphans = await this.reapOrphans().catch((error) => {
      this.deps.log.error({ err: error }, "recovery.reap.failed");
      return [];
    });
    return { deadWorkspaces, reapedOrphans };
  }

  private async stopInterruptedTurn(task: TaskRow): Promise<void> {
    const { workspaces, status, log } = this.deps;
    if (workspaces.mode === "local" && (await workspaces.isAlive(task))) {
      await workspaces
        .saveWork(task, "Umbra: save work of an interrupted turn")
        .catch((error) => log.warn({ taskId: task.id, err: errorMessage(error) }, "recovery.save.failed"));
    }
    await status.interruptTurn(task.id, INTERRUPTED_TURN_MESSAGE);
    if (workspaces.mode === "remote") {
      // This process has no connection to the old sandbox; destroy it so the next follow-up starts clean.
      await workspaces.teardown(task);
      await status.setInitStatus(task.id, InitStatus.INACTIVE, { reason: "sandbox of a dead server removed" });
    }
    log.warn({ taskId: task.id }, "recovery.turn.stopped");
  }

  private async restartInitialization(task: TaskRow): Promise<void> {
    const { workspaces, status, messages, log } = this.deps;
    await workspaces
      .teardown(task)
      .catch((error) => log.warn({ taskId: task.id, err: error }, "recovery.teardown.failed"));
    const inactive = await status.setInitStatus(task.id, InitStatus.INACTIVE, {
      reason: "initialization restarted after a crash",
    });
    const lastUserMessage = (await messages.history(task.id)).filter((m) => m.role === "user").at(-1);
    if (!lastUserMessage) {
      await status.failInitialization(task.id, "initialization was interrupted and the task has no message to run");
      return;
    }
    log.warn({ taskId: task.id }, "recovery.init.restarted");
    await this.deps.restart(inactive ?? task, lastUserMessage.content);
  }

  /** Ends active VM sessions whose sandbox is gone; their tasks become INACTIVE. */
  private async endSessionsOfMissingSandboxes(): Promise<string[]> {
    const { provider, db, clock, status, log } = this.deps;
    if (!provider) return [];
    const sessions = await db.select().from(vmSessions).where(eq(vmSessions.active, true));
    const ended: string[] = [];
    for (const session of sessions) {
      const state = await provider.status(session.externalId).catch(() => null);
      if (!state || (state.state !== "missing" && state.state !== "exited")) continue;
      await provider.destroy(session.externalId).catch(() => undefined);
      await db.update(vmSessions).set({ active: false, endedAt: clock.now() }).where(eq(vmSessions.id, session.id));
      ended.push(session.id);
      await status.setInitStatus(session.taskId, InitStatus.INACTIVE, { reason: `sandbox ${state.state}` });
      log.warn({ taskId: session.taskId, state: state.state }, "recovery.session.ended");
    }
    return ended;
  }

  /** Destroys sandboxes labelled as Umbra's that no task owns. */
  private async reapOrphans(): Promise<string[]> {
    const { provider, db, log } = this.deps;
    if (!provider) return [];
    const listed = await provider.list({ [UMBRA_LABELS.managedBy]: UMBRA_MANAGED_BY });
    if (listed.length === 0) return [];
    const owned = new Set(
      (await db.select({ externalId: vmSessions.externalId }).from(vmSessions).where(eq(vmSessions.active, true))).map(
        (s) => s.externalId,
      ),
    );
    const reaped: string[] = [];
    for (const vm of listed) {
      if (owned.has(vm.externalId)) continue;
      const taskId = vm.labels[UMBRA_LABELS.taskId];
      if (taskId && (this.deps.isActive(taskId) || (await this.isInitializing(taskId)))) continue;
      await provider.destroy(vm.externalId);
      reaped.push(vm.externalId);
      log.warn({ externalId: vm.externalId, taskId }, "recovery.orphan.destroyed");
    }
    return reaped;
  }

  private async isInitializing(taskId: string): Promise<boolean> {
    const [row] = await this.deps.db
      .select({ status: tasks.status })
      .from(tasks)
      .where(and(eq(tasks.id, taskId), eq(tasks.status, TaskStatus.INITIALIZING)));
    return row !== undefined;
  }

  /** Probes idle warm workspaces; a dead one sets its task INACTIVE (the next follow-up re-initializes). */
  private async markDeadWorkspaces(): Promise<string[]> {
    const { db, workspaces, status, log } = this.deps;
    const warm = await db
      .select()
      .from(tasks)
      .where(
        and(
          eq(tasks.initStatus, InitStatus.ACTIVE),
          inArray(tasks.status, [TaskStatus.COMPLETED, TaskStatus.STOPPED, TaskStatus.FAILED]),
        ),
      );
    const dead: string[] = [];
    for (const task of warm) {
      if (task.cleanupClaimedBy || this.deps.isActive(task.id) || (await workspaces.isAlive(task))) continue;
      await workspaces.teardown(task);
      if (await status.setInitStatus(task.id, InitStatus.INACTIVE, { reason: "workspace stopped answering" })) {
        dead.push(task.id);
        log.warn({ taskId: task.id }, "recovery.workspace.dead");
      }
    }
    return dead;
  }
}
