/**
 * Recovery of work whose server process went away, and the watch that keeps
 * warm workspaces honest. Several server processes may share the database:
 * nothing here touches work that a live process owns.
 *
 * Taking over (services/task-ownership.ts finds the work and takes its
 * ownership, continuously; this module carries it on):
 * - an initialization restarts from scratch with the last user message, after
 *   removing what the interrupted run had created (it holds no work);
 * - a turn is saved — in remote mode through the sandbox's sealed token, when
 *   the sandbox still answers; in local mode from its workspace, after the
 *   dead server's agent commands there are ended — its sandbox is destroyed,
 *   and the task ends STOPPED / INACTIVE with an explanation. A sandbox that
 *   is silent is not destroyed: the task ends STOPPED with the sandbox kept,
 *   reported, and handed to the cleanup service, which retries the save
 *   until the grace period is over (services/workspace-teardown.ts).
 * At start-up (before the API opens), also:
 * - processes a dead server left running in the data directory are ended
 *   (only those whose server is gone: see orphan-processes.ts);
 * - cleanup claims held by dead processes of this host are released;
 * - a take-over pass runs (only work whose owner is gone: starting a server
 *   never disturbs a live one);
 * - a VM session whose sandbox no longer exists is ended and its task set
 *   INACTIVE, so the next follow-up re-initializes.
 * At start-up and then periodically:
 * - sandboxes labelled as Umbra's that no task owns (no active VM session,
 *   task gone) are destroyed — orphans of crashes between creating a sandbox
 *   and recording it;
 * - warm workspaces are probed: one that is gone sets its task INACTIVE; one
 *   that is silent is reported and kept for the grace period.
 */
import { type Db, type TaskRow, tasks, vmSessions } from "@repo/db";
import { InitStatus, TaskStatus } from "@repo/types";
import { and, eq, inArray } from "drizzle-orm";
import { errorMessage } from "../errors";
import { probeWorkspace, type WorkspaceManager } from "../execution/types";
import { UMBRA_LABELS, UMBRA_MANAGED_BY, type VmProvider } from "../execution/vm/types";
import type { Logger } from "../logger";
import type { Clock, TimerHandle } from "../utils/clock";
import type { TaskStatusStore } from "../utils/task-status";
import type { CleanupClaims } from "./cleanup-claims";
import type { MessageLog } from "./message-log";
import { endOrphanedProcesses } from "./orphan-processes";
import type { TaskOwnership } from "./task-ownership";
import { type WorkspaceTeardown, WorkspaceUnreachableError } from "./workspace-teardown";

export const INTERRUPTED_TURN_MESSAGE =
  "The server stopped while the agent was working; the turn was interrupted. Send a follow-up to continue.";

export interface TaskRecoveryDeps {
  db: Db;
  clock: Clock;
  status: TaskStatusStore;
  workspaces: WorkspaceManager;
  teardown: WorkspaceTeardown;
  ownership: TaskOwnership;
  /** The VM provider in remote mode; null in local mode. */
  provider: VmProvider | null;
  messages: MessageLog;
  claims: CleanupClaims;
  /** Restarts initialization and the turn for `message` of a task left INITIALIZING / INACTIVE (owned by this process). */
  restart(task: TaskRow, message: string): Promise<void>;
  /** True while this process runs an initialization or a turn for the task. */
  isActive(taskId: string): boolean;
  log: Logger;
  /** Period of the orphan and health sweeps, in ms. */
  intervalMs: number;
  /** The server's data directory, searched for processes of a dead server. Unset: no search. */
  dataDir?: string;
}

export interface RecoveryReport {
  endedProcesses: number[];
  releasedClaims: string[];
  takenOver: string[];
  endedSessions: string[];
  reapedOrphans: string[];
  deadWorkspaces: string[];
}

export class TaskRecovery {
  private timer: TimerHandle | null = null;
  private sweeping: Promise<unknown> | null = null;

  constructor(private readonly deps: TaskRecoveryDeps) {}

  /** Recovers what dead processes left behind. Run once, before serving requests. */
  async recoverAtStartup(): Promise<RecoveryReport> {
    const report: RecoveryReport = {
      endedProcesses: [],
      releasedClaims: [],
      takenOver: [],
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
    report.takenOver = await this.deps.ownership.runOnce();
    await this.deps.ownership.whenIdle();
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

  /**
   * Carries on the work of a task this process just took over (it owns it
   * now): an initialization restarts, a turn is saved and ends STOPPED with
   * `message` (by default: the server stopped while the agent was working).
   */
  async takeOver(task: TaskRow, message = INTERRUPTED_TURN_MESSAGE): Promise<void> {
    if (task.status === TaskStatus.RUNNING) await this.stopInterruptedTurn(task, message);
    else if (task.status === TaskStatus.INITIALIZING) await this.restartInitialization(task);
  }

  private async stopInterruptedTurn(task: TaskRow, message: string): Promise<void> {
    const { workspaces, status, teardown, log, dataDir } = this.deps;
    const logged = log.child({ taskId: task.id });
    if (workspaces.mode === "local" && dataDir) {
      // The dead owner's agent commands must not write while the turn's work is committed.
      const ended = await endOrphanedProcesses(dataDir, 2000, task.id);
      if (ended.length > 0) logged.warn({ pids: ended }, "recovery.agent_processes.ended");
    }
    const probe = await probeWorkspace(workspaces, task);
    if (probe.state === "silent" && workspaces.mode === "remote") {
      let report = "";
      try {
        await teardown.unreachable(task, probe.detail ?? "it does not answer");
      } catch (error) {
        if (!(error instanceof WorkspaceUnreachableError)) throw error;
        report = ` ${error.report}`;
      }
      if (report) {
        // Kept, unsaved: the cleanup service retries the save until the grace period is over.
        await status.interruptTurn(task.id, `${message}${report}`);
        await status.scheduleTaskCleanup(task.id, 0, { reason: "the sandbox of an interrupted turn does not answer" });
        logged.warn("recovery.turn.stopped_sandbox_silent");
        return;
      }
    }
    let saved = false;
    if (probe.state === "answers") {
      try {
        await workspaces.saveWork(task, "Umbra: save work of an interrupted turn");
        saved = true;
      } catch (error) {
        logged.warn({ err: errorMessage(error) }, "recovery.save.failed");
      }
    }
    const workspaceRemoved = workspaces.mode === "remote" && (saved || probe.state !== "answers");
    if (workspaceRemoved) await workspaces.teardown(task);
    await status.interruptTurn(task.id, message, { workspaceRemoved });
    logged.warn({ saved, workspace: probe.state }, "recovery.turn.stopped");
  }

  private async restartInitialization(task: TaskRow): Promise<void> {
    const { workspaces, status, messages, log } = this.deps;
    await workspaces
      .teardown(task)
      .catch((error) => log.warn({ taskId: task.id, err: error }, "recovery.teardown.failed"));
    const inactive = await status.setInitStatus(task.id, InitStatus.INACTIVE, {
      reason: "initialization restarted after its server went away",
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

  /**
   * Probes idle warm workspaces (through the sealed token, whichever process
   * started them): one that is gone sets its task INACTIVE (the next
   * follow-up re-initializes); one that is silent is reported and kept until
   * its grace period is over.
   */
  private async markDeadWorkspaces(): Promise<string[]> {
    const { db, workspaces, status, teardown, log } = this.deps;
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
      if (task.cleanupClaimedBy || this.deps.isActive(task.id)) continue;
      const probe = await probeWorkspace(workspaces, task);
      if (probe.state === "answers") {
        await teardown.answered(task);
        continue;
      }
      if (probe.state === "silent") {
        try {
          await teardown.unreachable(task, probe.detail ?? "it does not answer");
        } catch (error) {
          if (error instanceof WorkspaceUnreachableError) continue;
          throw error;
        }
      }
      // INACTIVE first, and only if the task is still the warm one probed: a follow-up may have started
      // re-initializing it since the read above, and its new workspace must be neither marked nor torn down.
      if (
        await status.setInitStatus(task.id, InitStatus.INACTIVE, {
          reason: "workspace stopped answering",
          whileWarm: true,
        })
      ) {
        await workspaces.teardown(task);
        dead.push(task.id);
        log.warn({ taskId: task.id, workspace: probe.state }, "recovery.workspace.dead");
      }
    }
    return dead;
  }
}
