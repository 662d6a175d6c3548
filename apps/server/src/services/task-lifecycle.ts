/**
 * The task lifecycle (SPEC §2) as the API sees it: create, follow-up, stop,
 * archive, delete. Routes and socket handlers call these; nothing here knows
 * about HTTP.
 *
 * Each operation names the status move it needs and hands the work to the
 * turn runner. A task's agent is fixed at creation: an agent the server
 * cannot run (no key, no CLI) or a model for an agent that takes none is
 * refused then, with the reason, so a task never fails later for it. A move that loses a race comes back as null; this is the
 * layer that turns such a refusal into TaskBusyError or
 * InvalidTransitionError (409) for the caller.
 *
 * Any server process sharing the database serves any task: running work is
 * owned by one process (services/task-ownership.ts), so a stop (and the
 * archive or delete that stops first) received elsewhere is sent to the
 * owner over the replica bus, and answered here once the work has ended.
 * An owner that is gone has its work taken over here instead. A follow-up on
 * a warm workspace runs in the process that received it, through the
 * sandbox's sealed token: no re-provisioning.
 */
import { randomUUID } from "node:crypto";
import type { TaskRow } from "@repo/db";
import { type AgentKind, type CreateTaskBody, InitStatus, isBusy, TaskStatus } from "@repo/types";
import type { AgentCatalog } from "../agent/catalog";
import type { TaskOrigin } from "../delivery/delivery-service";
import { InvalidTransitionError, StopRequest, TaskBusyError, ValidationError } from "../errors";
import type { AgentStateDirs } from "../execution/agent-state";
import { probeWorkspace, type WorkspaceManager } from "../execution/types";
import type { Logger } from "../logger";
import type { ReplicaBus } from "../replicas/replica-bus";
import { RepositoryStore } from "../repository/repository-store";
import type { Clock } from "../utils/clock";
import { isGoneOnThisHost } from "../utils/process-identity";
import type { TaskChanges } from "../utils/task-changes";
import { hasOtherLiveOwner } from "../utils/task-moves";
import type { TaskStatusStore } from "../utils/task-status";
import type { CleanupClaims } from "./cleanup-claims";
import type { TaskOwnership } from "./task-ownership";
import type { TaskRepository } from "./task-repository";
import type { TurnRunner } from "./turn-runner";
import type { WorkspaceCapacity } from "./workspace-capacity";
import type { WorkspaceTeardown } from "./workspace-teardown";

/** What the lifecycle tells delivery about a new task, before its first turn. */
export interface DeliveryRegistration {
  register(task: TaskRow, mode: CreateTaskBody["delivery"], origin?: TaskOrigin): Promise<void>;
}

export interface TaskLifecycleDeps {
  tasks: TaskRepository;
  status: TaskStatusStore;
  turns: TurnRunner;
  workspaces: WorkspaceManager;
  teardown: WorkspaceTeardown;
  claims: CleanupClaims;
  store: RepositoryStore;
  /** The cap on live workspaces: a new workspace is taken only through it. */
  capacity: WorkspaceCapacity;
  ownership: TaskOwnership;
  bus: ReplicaBus;
  changes: TaskChanges;
  clock: Clock;
  /** Carries on, or ends with `message`, the work of a task this process just took over (task-recovery.ts). */
  takeOver(task: TaskRow, message?: string): Promise<void>;
  agents: AgentCatalog;
  agentState: AgentStateDirs;
  delivery?: DeliveryRegistration;
  log: Logger;
  /** How long a stop waits for a live owner to end the work, in ms. Default 120000. */
  stopWaitMs?: number;
  /** How often a stop is sent again to an owner that has not answered, in ms. Default 2000. */
  stopResendMs?: number;
}

/** The kinds that take a model: the others would silently ignore one. */
const TAKES_MODEL: ReadonlySet<AgentKind> = new Set(["llm", "claude-code", "codex"]);

export class TaskLifecycle {
  private closing = false;

  constructor(private readonly deps: TaskLifecycleDeps) {
    // Stops sent to this process by others, for work it owns.
    deps.bus.subscribe((message) => {
      if (message.type !== "stop" || message.to !== deps.ownership.ownerId) return;
      void deps.turns
        .stop(message.taskId, new StopRequest(message.reason, message.byUser))
        .catch((error) => deps.log.error({ taskId: message.taskId, err: error }, "stop.remote.failed"));
    });
  }

  /**
   * Creates the task (INITIALIZING / INACTIVE), records its delivery and
   * starts initializing it at once. At the workspace cap, room is made first
   * (CapacityError when none can be). `origin` names the issue a task from a
   * webhook was created for.
   */
  async create(body: CreateTaskBody, origin?: TaskOrigin): Promise<TaskRow> {
    this.assertOpen();
    const agent = await this.chooseAgent(body.agent, body.model);
    return this.deps.capacity.withRoom(async () => {
      const id = randomUUID();
      const task = await this.deps.status.createTask({
        id,
        title: body.title ?? titleFrom(body.message),
        mode: this.deps.workspaces.mode,
        repoUrl: body.repoUrl,
        baseBranch: body.baseBranch ?? null,
        branch: RepositoryStore.branchFor(id),
        agent,
        model: body.model ?? null,
      });
      await this.deps.delivery?.register(task, body.delivery, origin);
      await this.deps.turns.start(task, body.message, { initialize: true });
      return task;
    });
  }

  /** The task's agent: the one asked for (default AGENT), refused with the reason when it cannot run. */
  private async chooseAgent(requested: AgentKind | undefined, model: string | undefined): Promise<AgentKind> {
    const kind = requested ?? this.deps.agents.defaultKind;
    if (model !== undefined && !TAKES_MODEL.has(kind)) {
      throw new ValidationError(`model: the ${kind} agent takes no model`);
    }
    const availability = (await this.deps.agents.availability()).find((entry) => entry.kind === kind);
    if (!availability?.available) {
      throw new ValidationError(`agent: ${kind} is not available: ${availability?.reason ?? "unknown agent"}`);
    }
    return kind;
  }

  /**
   * A follow-up message. On a warm workspace the agent starts at once (the
   * cleanup is cancelled in the same write); otherwise the task re-initializes
   * first, within the workspace cap. Busy tasks are refused with TaskBusyError.
   */
  async followUp(taskId: string, message: string): Promise<TaskRow> {
    this.assertOpen();
    const { tasks, status, turns, workspaces, claims } = this.deps;
    let task = await tasks.get(taskId);
    if (isBusy(task) || turns.isRunning(taskId)) throw new TaskBusyError(taskId, task.status);

    if (task.initStatus === InitStatus.ACTIVE && !task.cleanupClaimedBy) {
      const executor = await workspaces.attach(task);
      const warm = executor ? await status.startWarmFollowUp(taskId, task) : null;
      if (executor && warm) {
        await turns.start(warm, message, { initialize: false, executor });
        return warm;
      }
      if (!executor) await this.leaveDeadWorkspace(task);
    }
    // A cleanup holds the task (or claimed it between our read and our write): wait for it to end.
    task = await tasks.get(taskId);
    if (task.cleanupClaimedBy) task = await claims.waitForCleanup(taskId);

    return this.deps.capacity.withRoom(async () => {
      const reinit = await status.beginReinitialization(taskId);
      if (!reinit) throw new TaskBusyError(taskId, (await tasks.get(taskId)).status);
      await turns.start(reinit, message, { initialize: true });
      return reinit;
    });
  }

  /**
   * Stops a running initialization or turn and waits until it has ended
   * STOPPED (its work saved). The runner that owns the work ends it — in
   * this process, or in the owner's, reached over the replica bus; only when
   * no live process owns it (its server died) is it taken over and ended here.
   */
  async stop(taskId: string, reason = "stopped by user"): Promise<TaskRow> {
    const { tasks, status, turns, ownership, log } = this.deps;
    let task = await tasks.get(taskId);
    if (!isBusy(task)) {
      throw new InvalidTransitionError(taskId, "status", task.status, TaskStatus.STOPPED, "nothing is running");
    }
    if (await turns.stop(taskId, new StopRequest(reason, true))) return tasks.get(taskId);
    if (this.ownedElsewhere(task)) {
      const ended = await this.stopAtOwner(task, reason);
      if (ended && !isBusy(ended)) return ended;
      task = ended ?? (await tasks.get(taskId));
      if (!isBusy(task)) return task;
      log.warn({ taskId, owner: task.ownerId }, "stop.owner.gone");
    }
    if (task.ownerId === ownership.ownerId) {
      // Owned here, but its work already ended or never started: make the move itself.
      const stopped =
        task.status === TaskStatus.RUNNING
          ? await status.endTurn(taskId, TaskStatus.STOPPED, reason)
          : await status.stopInitialization(taskId, reason);
      if (!stopped) throw new TaskBusyError(taskId, (await tasks.get(taskId)).status);
      return stopped;
    }
    const taken = await ownership.takeOver(task);
    if (!taken) throw new TaskBusyError(taskId, (await tasks.get(taskId)).status);
    if (taken.status === TaskStatus.RUNNING) {
      await this.deps.takeOver(taken, reason);
    } else {
      await this.deps.workspaces.teardown(taken);
      await status.stopInitialization(taskId, reason);
    }
    return tasks.get(taskId);
  }

  /** Stops what runs, saves the work, destroys the workspace: ARCHIVED / INACTIVE. */
  async archive(taskId: string): Promise<TaskRow> {
    const { tasks, claims, teardown } = this.deps;
    let task = await tasks.get(taskId);
    if (task.cleanupClaimedBy) task = await claims.waitForCleanup(taskId);
    if (task.status === TaskStatus.ARCHIVED) {
      throw new InvalidTransitionError(taskId, "status", task.status, TaskStatus.ARCHIVED, "already archived");
    }
    if (isBusy(task)) await this.stop(taskId, "stopped because the task was archived").catch(() => undefined);
    const archived = await teardown.archive(taskId, "archived by user");
    if (!archived) {
      throw new InvalidTransitionError(taskId, "status", (await tasks.get(taskId)).status, TaskStatus.ARCHIVED);
    }
    return archived;
  }

  /** Stops what runs, destroys the workspace and deletes the task and its branch. */
  async delete(taskId: string): Promise<void> {
    const { tasks, teardown, store } = this.deps;
    const task = await tasks.get(taskId);
    if (isBusy(task)) await this.stop(taskId, "task deleted").catch(() => undefined);
    await teardown.destroy(task);
    await tasks.delete(taskId);
    await this.deps.agentState.remove(taskId);
    if (task.branch) await store.deleteBranch(task.repoUrl, task.branch);
  }

  /** Restarts initialization and the turn of a task left INITIALIZING / INACTIVE (recovery). */
  resume(task: TaskRow, message: string): Promise<void> {
    return this.deps.turns.start(task, message, { initialize: true, append: false });
  }

  /**
   * Shutdown: refuse new work, stop every running turn (STOPPED with a
   * reason), wait for them to save their work. Initializations are left
   * INITIALIZING and their ownership given up, so another server process
   * takes them over at once. Warm sandboxes keep running: their tokens are
   * sealed in the database and their deadlines too, so whichever process
   * comes next follows up in them or cleans them up.
   */
  async shutdown(reason = "server shutting down"): Promise<void> {
    this.closing = true;
    const running = this.deps.turns.runningTaskIds();
    await this.deps.turns.stopAll(reason);
    await this.deps.ownership
      .release(running)
      .catch((error) => this.deps.log.error({ err: error }, "shutdown.release.failed"));
  }

  private assertOpen(): void {
    if (this.closing) throw new TaskBusyError("*", "shutting down");
  }

  /** A warm workspace that no longer answers: gone → INACTIVE; silent → refused (kept, reported). */
  private async leaveDeadWorkspace(task: TaskRow): Promise<void> {
    const { workspaces, status, teardown, log } = this.deps;
    const probe = await probeWorkspace(workspaces, task);
    if (probe.state === "answers") return; // it answered again; the warm start lost a race instead
    if (probe.state === "silent") {
      await teardown.unreachable(task, probe.detail ?? "it does not answer"); // throws within the grace period
      await workspaces.teardown(task);
    }
    log.warn({ taskId: task.id, workspace: probe.state }, "followup.workspace.dead");
    await status.setInitStatus(task.id, InitStatus.INACTIVE, { reason: "workspace is gone" });
  }

  /** True when another process owns the task's work and its lease holds. */
  private ownedElsewhere(task: TaskRow): boolean {
    const mover = { ownerId: this.deps.ownership.ownerId, now: this.deps.clock.now() };
    return hasOtherLiveOwner(task, mover) && !isGoneOnThisHost(task.ownerId!);
  }

  /**
   * Sends the stop to the owner (again every few seconds: the bus is best
   * effort) and waits until the work has ended, or the owner is gone (its
   * lease ran out, or it stopped renewing it). The task as last read.
   */
  private async stopAtOwner(task: TaskRow, reason: string): Promise<TaskRow | null> {
    const { bus, tasks, changes, stopWaitMs = 120_000, stopResendMs = 2000, log } = this.deps;
    const owner = task.ownerId!;
    const send = () =>
      bus
        .publish({ type: "stop", to: owner, taskId: task.id, reason, byUser: true })
        .catch((error) => log.warn({ taskId: task.id, err: error }, "stop.send.failed"));
    await send();
    const started = Date.now();
    let lastSent = started;
    for (;;) {
      const current = await tasks.get(task.id);
      if (!isBusy(current) || current.ownerId !== owner || !this.ownedElsewhere(current)) return current;
      if (Date.now() - started > stopWaitMs) throw new TaskBusyError(task.id, current.status);
      if (Date.now() - lastSent >= stopResendMs) {
        lastSent = Date.now();
        await send();
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, 250);
        const unsubscribe = changes.subscribe((change) => {
          if (change.task.id === task.id) done();
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

function titleFrom(message: string): string {
  const line = message.trim().split("\n")[0]!.trim();
  return line.length > 80 ? `${line.slice(0, 77)}…` : line;
}
