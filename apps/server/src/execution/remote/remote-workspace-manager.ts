/**
 * Remote mode: each task gets its own sandbox from a VM provider, running the
 * sidecar; the agent acts only through the sidecar (RemoteToolExecutor is the
 * SidecarClient, the same ToolExecutor interface local mode uses).
 *
 * Steps: CREATE_VM (provider create + VM session row), WAIT_VM_READY (poll
 * the sidecar's health against a deadline), VERIFY_VM_WORKSPACE (stream the
 * task branch from the repository store, only what the sandbox lacks; check
 * the sandbox is at the saved head).
 *
 * Work never lives only in the VM: saveWork puts whatever the agent left on
 * the task branch and streams the new commits back into the store (see
 * branch-sync.ts); it runs after every turn and before every teardown, and
 * a save that cannot complete is one WorkspaceSaveError with its reason.
 *
 * The per-VM token is random, kept in memory only, and stored hashed in the
 * VM session row. After a server restart a sandbox is therefore unreachable;
 * it holds no unsaved work (every turn ended with a save) and is replaced on
 * the next follow-up.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { type Db, type TaskRow, vmSessions } from "@repo/db";
import { InitStatus } from "@repo/types";
import { SidecarClient, type ToolExecutor } from "@repo/workspace";
import { and, eq } from "drizzle-orm";
import { errorMessage, WorkspaceError, WorkspaceSaveError } from "../../errors";
import type { Logger } from "../../logger";
import type { RepositoryStore } from "../../repository/repository-store";
import { hashToken } from "../../utils/auth";
import type { Clock } from "../../utils/clock";
import { resolveTaskBase } from "../task-branch";
import type { StepContext, WorkspaceManager } from "../types";
import { UMBRA_LABELS, UMBRA_MANAGED_BY, type VmProvider } from "../vm/types";
import { saveBranch, sendBranch } from "./branch-sync";

export interface RemoteWorkspaceManagerOptions {
  db: Db;
  clock: Clock;
  store: RepositoryStore;
  provider: VmProvider;
  /** How long WAIT_VM_READY waits for the sidecar, in ms. */
  readyTimeoutMs: number;
  /** Pause between health probes while waiting, in ms. Default 100. */
  readyPollMs?: number;
  /**
   * Limit of one health probe, in ms (WAIT_VM_READY's probes, isAlive). Default 5000.
   * A sandbox that hangs instead of failing must not hold a step, a follow-up
   * or a cleanup for the client's general request limit (two minutes).
   */
  probeTimeoutMs?: number;
  log: Logger;
}

interface LiveVm {
  sessionId: string;
  externalId: string;
  client: SidecarClient;
  /** The same sidecar with the short probe limit, for health probes. */
  probe: SidecarClient;
}

export class RemoteWorkspaceManager implements WorkspaceManager {
  readonly mode = "remote" as const;
  private readonly vms = new Map<string, LiveVm>();

  constructor(private readonly options: RemoteWorkspaceManagerOptions) {}

  get vmProvider(): VmProvider {
    return this.options.provider;
  }

  async runStep(step: InitStatus, context: StepContext) {
    switch (step) {
      case InitStatus.CREATE_VM:
        return this.createVm(context);
      case InitStatus.WAIT_VM_READY:
        await this.waitReady(context);
        return undefined;
      case InitStatus.VERIFY_VM_WORKSPACE:
        await this.verifyWorkspace(context);
        return undefined;
      default:
        throw new WorkspaceError(`remote workspaces have no ${step} step`, step, false);
    }
  }

  private async createVm({ task, log }: StepContext) {
    const { store, provider, db, clock } = this.options;
    const base = await resolveTaskBase(store, task);
    await store.ensureBranch(task.repoUrl, base.branch, base.baseCommitSha);
    await this.teardown(task); // a sandbox left over from an earlier attempt
    const token = randomBytes(32).toString("base64url");
    const handle = await provider.create({
      taskId: task.id,
      token,
      labels: { [UMBRA_LABELS.managedBy]: UMBRA_MANAGED_BY, [UMBRA_LABELS.taskId]: task.id },
    });
    const sessionId = randomUUID();
    await db.insert(vmSessions).values({
      id: sessionId,
      taskId: task.id,
      provider: handle.provider,
      externalId: handle.externalId,
      endpoint: handle.endpoint,
      tokenHash: hashToken(token),
      active: true,
      createdAt: clock.now(),
    });
    const probeTimeoutMs = Math.min(this.options.probeTimeoutMs ?? 5000, this.options.readyTimeoutMs);
    this.vms.set(task.id, {
      sessionId,
      externalId: handle.externalId,
      client: new SidecarClient({ endpoint: handle.endpoint, token }),
      probe: new SidecarClient({ endpoint: handle.endpoint, token, timeoutMs: probeTimeoutMs }),
    });
    log.info({ provider: handle.provider, externalId: handle.externalId }, "vm.created");
    return { ...base.patch, workspacePath: handle.endpoint };
  }

  private async waitReady({ task, signal }: StepContext): Promise<void> {
    const vm = this.live(task);
    const { readyTimeoutMs, readyPollMs = 100, provider } = this.options;
    const started = Date.now();
    let lastSeen = "no answer yet";
    while (Date.now() - started < readyTimeoutMs) {
      signal.throwIfAborted();
      try {
        const health = await vm.probe.health();
        if (health.ok) return;
        lastSeen = `health answered ${JSON.stringify(health)}`;
      } catch (error) {
        lastSeen = errorMessage(error);
        const state = await provider.status(vm.externalId).catch(() => null);
        if (state && (state.state === "exited" || state.state === "missing")) {
          throw new WorkspaceError(
            `sandbox ${state.state}${state.detail ? ` (${state.detail})` : ""} before its sidecar became ready`,
            InitStatus.WAIT_VM_READY,
            true,
          );
        }
      }
      await new Promise((resolve) => setTimeout(resolve, readyPollMs));
    }
    throw new WorkspaceError(
      `sidecar not ready after waiting ${Math.round((Date.now() - started) / 1000)} s (last: ${lastSeen})`,
      InitStatus.WAIT_VM_READY,
      true,
    );
  }

  private async verifyWorkspace({ task, log }: StepContext): Promise<void> {
    const vm = this.live(task);
    const branch = task.branch!;
    const { head } = await sendBranch(this.options.store, vm.client, task, log);
    const health = await vm.client.health();
    if (health.head !== head || health.branch !== branch) {
      throw new WorkspaceError(
        `workspace is at ${health.branch ?? "no branch"}@${health.head ?? "nothing"}, expected ${branch}@${head}`,
        InitStatus.VERIFY_VM_WORKSPACE,
        true,
      );
    }
  }

  async executor(task: TaskRow): Promise<ToolExecutor> {
    return this.live(task).client;
  }

  async attach(task: TaskRow): Promise<ToolExecutor | null> {
    return (await this.isAlive(task)) ? this.live(task).client : null;
  }

  async saveWork(task: TaskRow, message: string): Promise<string> {
    const vm = this.vms.get(task.id);
    if (!vm) throw new WorkspaceSaveError("WORKSPACE_MISSING", `task ${task.id} has no running sandbox to save from`);
    const log = this.options.log.child({ taskId: task.id });
    return (await saveBranch(this.options.store, vm.client, task, message, log)).head;
  }

  /**
   * Destroys the task's sandboxes: those of its active VM sessions, and any
   * other carrying its task label — one a crashed server started but never
   * recorded in a session (it died between creating the sandbox and writing
   * the row, or while the sandbox was starting).
   */
  async teardown(task: TaskRow): Promise<void> {
    const { db, provider, clock, log } = this.options;
    const sessions = await db
      .select()
      .from(vmSessions)
      .where(and(eq(vmSessions.taskId, task.id), eq(vmSessions.active, true)));
    for (const session of sessions) {
      await provider.destroy(session.externalId);
      await db.update(vmSessions).set({ active: false, endedAt: clock.now() }).where(eq(vmSessions.id, session.id));
      log.info({ taskId: task.id, externalId: session.externalId }, "vm.destroyed");
    }
    const destroyed = new Set(sessions.map((session) => session.externalId));
    for (const vm of await provider.list({ [UMBRA_LABELS.taskId]: task.id })) {
      if (destroyed.has(vm.externalId)) continue;
      await provider.destroy(vm.externalId);
      log.warn({ taskId: task.id, externalId: vm.externalId }, "vm.destroyed_unrecorded");
    }
    this.vms.delete(task.id);
  }

  async isAlive(task: TaskRow): Promise<boolean> {
    const vm = this.vms.get(task.id);
    if (!vm) return false;
    try {
      return (await vm.probe.health()).ok === true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.options.provider.close?.();
  }

  private live(task: TaskRow): LiveVm {
    const vm = this.vms.get(task.id);
    if (!vm) throw new WorkspaceError(`task ${task.id} has no running sandbox`, null, true);
    return vm;
  }
}
