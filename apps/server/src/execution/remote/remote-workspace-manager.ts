/**
 * Remote mode: each task gets its own sandbox from a VM provider, running the
 * sidecar; the agent acts only through the sidecar (RemoteToolExecutor is the
 * SidecarClient, the same ToolExecutor interface local mode uses).
 *
 * Steps: CREATE_VM (provider create + VM session row), WAIT_VM_READY (poll
 * the sidecar's health against a deadline), VERIFY_VM_WORKSPACE (stream the
 * task branch from the repository store, only what the sandbox lacks; check
 * the sandbox is at the saved head). A sandbox on this host borrows the
 * repository's upstream history read-only (repository/borrowed-objects.ts),
 * so only the task's own commits are streamed into a new one.
 *
 * Work never lives only in the VM: saveWork puts whatever the agent left on
 * the task branch and streams the new commits back into the store (see
 * branch-sync.ts); it runs after every turn and before every teardown, and
 * a save that cannot complete is one WorkspaceSaveError with its reason.
 *
 * The agent's state (agent-state.ts) outlives every sandbox of the task.
 * With a provider that mounts host directories (`process`), the task's
 * state directory is bound read-write at its own path, and the task's agent
 * CLI's installation read-only; nothing needs copying. Otherwise
 * (`kubernetes`) the state lives in the sandbox's own directory
 * (`sandboxAgents.home`): saveWork archives it onto the server's disk with
 * the branch, and VERIFY_VM_WORKSPACE restores the archive into a new sandbox.
 *
 * The per-VM token is random and stored in the VM session row sealed with the
 * server's secret box (and hashed). Any server process sharing the database
 * and the key — another replica, or this server after a restart — rebuilds
 * the sidecar client of a live sandbox from that row, so it can save the
 * sandbox's work, run a follow-up in it or clean it up. The token never
 * appears in logs, errors or task JSON.
 *
 * probe() tells a sandbox that answers from one that is gone (nothing left
 * to save) and from one that is silent (its process runs but does not
 * answer, or its token cannot be opened): a silent sandbox may still hold
 * unsaved work and is never destroyed here on that ground. "Answers" is the
 * sidecar's /alive, which reads nothing of the workspace: a warm follow-up
 * pays one round trip for it, not the two git processes in the agent's
 * sandbox that /health (the head and branch, for WAIT_VM_READY and
 * VERIFY_VM_WORKSPACE) costs.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { type Db, type TaskRow, vmSessions } from "@repo/db";
import { InitStatus } from "@repo/types";
import { SidecarClient, sidecarProtocol, type ToolExecutor } from "@repo/workspace";
import { and, eq } from "drizzle-orm";
import { errorMessage, WorkspaceError, WorkspaceSaveError } from "../../errors";
import type { Logger } from "../../logger";
import type { RepositoryStore } from "../../repository/repository-store";
import { hashToken } from "../../utils/auth";
import type { Clock } from "../../utils/clock";
import { retryRead } from "../../utils/db-retry";
import type { SecretBox } from "../../utils/secret-box";
import type { AgentStateDirs } from "../agent-state";
import { resolveTaskBase } from "../task-branch";
import type { StepContext, WorkspaceManager, WorkspaceProbe } from "../types";
import { UMBRA_LABELS, UMBRA_MANAGED_BY, type VmMount, type VmProvider } from "../vm/types";
import { saveBranch, sendBranch, toSaveError } from "./branch-sync";

export interface RemoteWorkspaceManagerOptions {
  db: Db;
  clock: Clock;
  store: RepositoryStore;
  provider: VmProvider;
  /** Seals each sandbox's token in its VM session row (SECRETS_KEY, shared by every server process). */
  secrets: SecretBox;
  agentState: AgentStateDirs;
  /** Host directories the task's agent needs read-only in its sandbox (see WorkspaceManagerDeps). Default: none. */
  agentMounts?: (task: TaskRow) => string[];
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
  /** Clients of sandboxes this process has reached, by task; checked against the task's active session. */
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

  private async createVm({ task, log, network, signal }: StepContext) {
    const { store, provider, db, clock } = this.options;
    const base = await resolveTaskBase(store, task, signal);
    await store.ensureBranch(task.repoUrl, base.branch, base.baseCommitSha);
    await this.teardown(task); // a sandbox left over from an earlier attempt
    const token = randomBytes(32).toString("base64url");
    const handle = await provider.create({
      taskId: task.id,
      token,
      labels: { [UMBRA_LABELS.managedBy]: UMBRA_MANAGED_BY, [UMBRA_LABELS.taskId]: task.id },
      network,
      ...(provider.hostMounts ? { mounts: await this.mountsFor(task, log, signal) } : {}),
    });
    const sessionId = randomUUID();
    await db.insert(vmSessions).values({
      id: sessionId,
      taskId: task.id,
      provider: handle.provider,
      externalId: handle.externalId,
      endpoint: handle.endpoint,
      tokenHash: hashToken(token),
      tokenSealed: this.options.secrets.seal(token, tokenContext(sessionId)),
      active: true,
      createdAt: clock.now(),
    });
    this.vms.set(task.id, this.clientsFor(sessionId, handle.externalId, handle.endpoint, token));
    log.info({ provider: handle.provider, externalId: handle.externalId }, "vm.created");
    return { ...base.patch, workspacePath: handle.endpoint };
  }

  /**
   * The task's state directory read-write; its agent's CLI and the
   * repository's borrowed objects (upstream history only) read-only; each at
   * its own path.
   */
  private async mountsFor(task: TaskRow, log: Logger, signal: AbortSignal): Promise<VmMount[]> {
    const state = await this.options.agentState.ensure(task.id);
    const cliDirs = this.options.agentMounts?.(task) ?? [];
    // Borrowing only saves sending the history: without it, the sandbox is sent all of it, as before.
    const started = performance.now();
    const borrowed = await this.options.store.borrowedObjects(task.repoUrl, signal).then(
      (dir) => {
        log.info({ ms: Math.round(performance.now() - started) }, "workspace.borrowed_objects");
        return dir;
      },
      (error: unknown) => {
        signal.throwIfAborted();
        log.warn({ err: error }, "workspace.borrowed_objects_failed");
        return null;
      },
    );
    return [
      { source: state, target: state, writable: true },
      ...[...cliDirs, ...(borrowed ? [borrowed] : [])].map((dir) => ({ source: dir, target: dir, writable: false })),
    ];
  }

  /** The borrowed-objects directory a sandbox of this provider may have bound in (see mountsFor). */
  private borrowFor(task: TaskRow): string | undefined {
    if (!this.options.provider.hostMounts) return undefined;
    const dir = this.options.store.borrowedPath(task.repoUrl);
    // A path the sidecar would refuse (DATA_DIR with a control character, say) is not offered at all.
    return sidecarProtocol.BorrowedDir.safeParse(dir).success ? dir : undefined;
  }

  private async waitReady({ task, signal }: StepContext): Promise<void> {
    const vm = await this.live(task);
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
    const vm = await this.live(task);
    const branch = task.branch!;
    const { head } = await sendBranch(this.options.store, vm.client, task, log, this.borrowFor(task));
    const health = await vm.client.health();
    if (health.head !== head || health.branch !== branch) {
      throw new WorkspaceError(
        `workspace is at ${health.branch ?? "no branch"}@${health.head ?? "nothing"}, expected ${branch}@${head}`,
        InitStatus.VERIFY_VM_WORKSPACE,
        true,
      );
    }
    if (!this.options.provider.hostMounts) {
      const archive = await this.options.agentState.readArchive(task.id);
      if (archive) await vm.client.restoreAgentState(archive);
    }
  }

  async agentHome(task: TaskRow): Promise<string> {
    const inSandbox = this.options.provider.sandboxAgents?.home;
    return inSandbox ?? this.options.agentState.ensure(task.id);
  }

  async executor(task: TaskRow): Promise<ToolExecutor> {
    return (await this.live(task)).client;
  }

  async attach(task: TaskRow): Promise<ToolExecutor | null> {
    // The sandbox this process already knows is probed while the session row is read, so a warm
    // follow-up waits for one of the two, not both; the answer counts only if the row still names it.
    const known = this.vms.get(task.id);
    const knownAnswers = known ? this.answers(known) : null;
    const vm = await this.connect(task).catch(() => null);
    if (!vm) return null;
    const answers = vm === known && knownAnswers ? await knownAnswers : await this.answers(vm);
    return answers ? vm.client : null;
  }

  async saveWork(task: TaskRow, message: string): Promise<string> {
    const vm = await this.connect(task).catch((error: unknown) => {
      throw toSaveError(error);
    });
    if (!vm) throw new WorkspaceSaveError("WORKSPACE_MISSING", `task ${task.id} has no running sandbox to save from`);
    const log = this.options.log.child({ taskId: task.id });
    const { head } = await saveBranch(this.options.store, vm.client, task, message, log);
    if (!this.options.provider.hostMounts) {
      await this.options.agentState.writeArchive(task.id, await vm.client.archiveAgentState());
    }
    return head;
  }

  /**
   * Moves the task branch in the store, then sends it to the sandbox, which
   * takes it as a fast-forward (it refuses anything else). If the sandbox
   * cannot take it, the store's branch is moved back, so the store never
   * holds a head the workspace does not descend from.
   */
  async fastForward(task: TaskRow, sha: string): Promise<void> {
    const { store } = this.options;
    const vm = await this.live(task);
    const branch = task.branch!;
    const head = await store.savedHead(task.repoUrl, branch);
    await store.moveBranch(task.repoUrl, branch, head, sha);
    try {
      await sendBranch(store, vm.client, task, this.options.log.child({ taskId: task.id }), this.borrowFor(task));
    } catch (error) {
      await store.moveBranch(task.repoUrl, branch, sha, head).catch(() => undefined);
      throw error;
    }
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
    return (await this.probe(task)).state === "answers";
  }

  async probe(task: TaskRow): Promise<WorkspaceProbe> {
    const session = await this.activeSession(task.id);
    if (!session) return { state: "gone", detail: "the task has no sandbox" };
    let vm: LiveVm | null = null;
    let detail = "it does not answer";
    try {
      vm = await this.connect(task);
    } catch (error) {
      detail = errorMessage(error);
    }
    if (vm && (await this.answers(vm))) return { state: "answers" };
    const state = await this.options.provider.status(session.externalId).catch(() => null);
    if (state && (state.state === "missing" || state.state === "exited")) {
      return { state: "gone", detail: `sandbox ${state.state}${state.detail ? ` (${state.detail})` : ""}` };
    }
    return { state: "silent", detail };
  }

  async close(): Promise<void> {
    await this.options.provider.close?.();
  }

  private async answers(vm: LiveVm): Promise<boolean> {
    try {
      return (await vm.probe.alive()).ok === true;
    } catch {
      return false;
    }
  }

  private async live(task: TaskRow): Promise<LiveVm> {
    const vm = await this.connect(task);
    if (!vm) throw new WorkspaceError(`task ${task.id} has no running sandbox`, null, true);
    return vm;
  }

  /**
   * The clients of the task's active sandbox: the ones this process already
   * has, or new ones from the session row's sealed token (a sandbox another
   * server process started). Null when the task has no active session.
   */
  private async connect(task: TaskRow): Promise<LiveVm | null> {
    const session = await this.activeSession(task.id);
    if (!session) {
      this.vms.delete(task.id);
      return null;
    }
    const known = this.vms.get(task.id);
    if (known?.sessionId === session.id) return known;
    if (!session.tokenSealed || !session.endpoint) {
      throw new WorkspaceError(
        `the sandbox of task ${task.id} was started by a server that kept its token in memory only`,
        null,
        false,
      );
    }
    let token: string;
    try {
      token = this.options.secrets.open(session.tokenSealed, tokenContext(session.id));
    } catch (error) {
      throw new WorkspaceError(
        `the sandbox token of task ${task.id} does not open with this server's SECRETS_KEY (${errorMessage(error)})`,
        null,
        false,
      );
    }
    const vm = this.clientsFor(session.id, session.externalId, session.endpoint, token);
    this.vms.set(task.id, vm);
    this.options.log.info({ taskId: task.id, externalId: session.externalId }, "vm.client.rebuilt");
    return vm;
  }

  /** The task's live session row; read on every turn's path, so it steps over a dropped connection. */
  private async activeSession(taskId: string) {
    const [session] = await retryRead(() =>
      this.options.db
        .select()
        .from(vmSessions)
        .where(and(eq(vmSessions.taskId, taskId), eq(vmSessions.active, true))),
    );
    return session ?? null;
  }

  private clientsFor(sessionId: string, externalId: string, endpoint: string, token: string): LiveVm {
    const probeTimeoutMs = Math.min(this.options.probeTimeoutMs ?? 5000, this.options.readyTimeoutMs);
    return {
      sessionId,
      externalId,
      client: new SidecarClient({ endpoint, token }),
      probe: new SidecarClient({ endpoint, token, timeoutMs: probeTimeoutMs }),
    };
  }
}

/** The secret box context of a session's token: a sealed token copied to another row does not open there. */
function tokenContext(sessionId: string): string {
  return `vm-token:${sessionId}`;
}
