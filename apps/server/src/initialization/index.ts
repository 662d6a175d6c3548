/**
 * TaskInitializationEngine: provisions a task's workspace step by step.
 *
 * It walks getStepsForMode(mode); before each step runs, `initStatus` is set
 * to that step (persisted and emitted), and init-progress events report
 * start, each step, and the end. Success leaves `initStatus` ACTIVE (the
 * caller then moves the task to RUNNING). Failure leaves the task FAILED with
 * `initializationError` naming the step and the cause, the partial workspace
 * removed and `initStatus` back to INACTIVE. Work already saved on the task
 * branch is never touched by a failed initialization: it lives in the store.
 *
 * A user's stop ends it STOPPED / INACTIVE; the server going away leaves it
 * INITIALIZING / INACTIVE, to be taken over by another server process (see
 * services/task-ownership.ts). A run whose ownership was taken over leaves
 * everything to the new owner.
 *
 * At most one initialization runs per task in this process; the INITIALIZING
 * status compare-and-set keeps it to one across processes.
 */
import type { TaskRow } from "@repo/db";
import { getStepsForMode, type InitializationProgress, InitStatus, STEP_DISPLAY_NAMES, TaskStatus } from "@repo/types";
import type { DependencyInstaller } from "../environments/install-dependencies";
import { errorMessage, StopRequest, TaskBusyError } from "../errors";
import type { StepContext, WorkspaceManager } from "../execution/types";
import type { NetworkPolicy } from "../execution/vm/egress/egress-policy";
import type { Logger } from "../logger";
import type { RepositoryIndexer } from "../repository/indexer";
import type { RepositoryStore } from "../repository/repository-store";
import type { TaskRepository } from "../services/task-repository";
import type { TaskFieldsPatch, TaskStatusStore } from "../utils/task-status";

export type ProvisionStep = Exclude<InitStatus, "INACTIVE" | "ACTIVE">;

export interface StepDeps {
  workspaces: WorkspaceManager;
  indexer: RepositoryIndexer;
  store: RepositoryStore;
  dependencies: DependencyInstaller;
  /**
   * The egress policy of a new sandbox for `repoUrl` (its environment's
   * network and allowedDomains); undefined: the provider's default.
   */
  sandboxNetwork?: (repoUrl: string) => Promise<NetworkPolicy | undefined>;
}

export interface StepDefinition {
  name: string;
  run(context: StepContext, deps: StepDeps): Promise<TaskFieldsPatch | undefined>;
}

const workspaceStep = (step: ProvisionStep): StepDefinition => ({
  name: STEP_DISPLAY_NAMES[step],
  run: (context, { workspaces }) => workspaces.runStep(step, context),
});

/** What each InitStatus step does. */
export const STEP_DEFINITIONS: Record<ProvisionStep, StepDefinition> = {
  PREPARE_WORKSPACE: workspaceStep(InitStatus.PREPARE_WORKSPACE),
  CREATE_VM: {
    name: STEP_DISPLAY_NAMES.CREATE_VM,
    async run(context, { workspaces, sandboxNetwork }) {
      const network = await sandboxNetwork?.(context.task.repoUrl);
      return workspaces.runStep(InitStatus.CREATE_VM, network ? { ...context, network } : context);
    },
  },
  WAIT_VM_READY: workspaceStep(InitStatus.WAIT_VM_READY),
  VERIFY_VM_WORKSPACE: workspaceStep(InitStatus.VERIFY_VM_WORKSPACE),
  INSTALL_DEPENDENCIES: {
    name: STEP_DISPLAY_NAMES.INSTALL_DEPENDENCIES,
    async run(context, { workspaces, dependencies }) {
      await dependencies.install(context, await workspaces.executor(context.task));
      return undefined;
    },
  },
  INDEX_REPOSITORY: {
    name: STEP_DISPLAY_NAMES.INDEX_REPOSITORY,
    async run({ task }, { indexer, store }) {
      // The workspace is ready without its index: search_code answers from a text search until it is built.
      const head = await store.branchHead(task.repoUrl, task.branch!);
      await indexer.indexInBackground(task.repoUrl, head);
      return { indexedCommitSha: head };
    },
  },
};

/** The task left INITIALIZING while a step ran (it was stopped or archived meanwhile). */
function moved(taskId: string, to: InitStatus): never {
  throw new InitializationError(taskId, null, `the task is no longer initializing (could not move to ${to})`);
}

export class InitializationError extends Error {
  constructor(
    readonly taskId: string,
    readonly step: InitStatus | null,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "InitializationError";
  }
}

export interface InitializationEngineDeps extends StepDeps {
  status: TaskStatusStore;
  tasks: TaskRepository;
  onProgress(taskId: string, progress: InitializationProgress): void;
  log: Logger;
  /** Step table; defaults to STEP_DEFINITIONS. */
  steps?: Record<ProvisionStep, StepDefinition>;
}

export class TaskInitializationEngine {
  private readonly running = new Map<string, Promise<TaskRow>>();

  constructor(private readonly deps: InitializationEngineDeps) {}

  /** Provisions the task's workspace; resolves with the task at ACTIVE. */
  initialize(taskId: string, signal: AbortSignal): Promise<TaskRow> {
    if (this.running.has(taskId)) return Promise.reject(new TaskBusyError(taskId, TaskStatus.INITIALIZING));
    const run = this.run(taskId, signal).finally(() => this.running.delete(taskId));
    this.running.set(taskId, run);
    return run;
  }

  private async run(taskId: string, signal: AbortSignal): Promise<TaskRow> {
    const { status, onProgress } = this.deps;
    const log = this.deps.log.child({ taskId });
    let task = await this.deps.tasks.get(taskId);
    const steps = getStepsForMode(task.mode) as ProvisionStep[];
    const totalSteps = steps.length;
    const stepTable = this.deps.steps ?? STEP_DEFINITIONS;
    let current: ProvisionStep | null = null;
    let lastCompletedStep: InitStatus | undefined;
    const started = Date.now();
    onProgress(taskId, { type: "init-start", totalSteps, message: `Initializing ${task.mode} workspace` });
    try {
      for (const [index, step] of steps.entries()) {
        signal.throwIfAborted();
        current = step;
        const definition = stepTable[step];
        task = (await status.setInitStatus(taskId, step, { reason: "initialization step" })) ?? moved(taskId, step);
        const progress = { currentStep: step, stepName: definition.name, stepNumber: index + 1, totalSteps };
        onProgress(taskId, { type: "step-start", lastCompletedStep, ...progress });
        const stepStarted = Date.now();
        const output = (text: string) => onProgress(taskId, { type: "step-log", ...progress, log: text });
        const patch = await definition.run({ task, signal, log: log.child({ step }), output }, this.deps);
        if (patch && Object.keys(patch).length > 0) task = (await status.updateTaskFields(taskId, patch)) ?? task;
        lastCompletedStep = step;
        log.info({ step, ms: Date.now() - stepStarted }, "init.step.complete");
        onProgress(taskId, { type: "step-complete", lastCompletedStep, ...progress });
      }
      signal.throwIfAborted();
      task =
        (await status.setInitStatus(taskId, InitStatus.ACTIVE, { reason: "initialization complete" })) ??
        moved(taskId, InitStatus.ACTIVE);
      log.info({ ms: Date.now() - started }, "init.complete");
      onProgress(taskId, { type: "init-complete", lastCompletedStep, totalSteps, message: "Workspace ready" });
      return task;
    } catch (error) {
      await this.fail(task, current, steps, error, signal, log);
      throw error instanceof InitializationError
        ? error
        : new InitializationError(taskId, current, errorMessage(error), { cause: error });
    }
  }

  /** Removes what the run created and records the failure (or the stop). */
  private async fail(
    task: TaskRow,
    step: ProvisionStep | null,
    steps: ProvisionStep[],
    error: unknown,
    signal: AbortSignal,
    log: Logger,
  ): Promise<void> {
    const { status, onProgress, workspaces, tasks } = this.deps;
    const current = await tasks.get(task.id).catch(() => null);
    if (current?.ownerId && current.ownerId !== status.ownerId) {
      // Another process took the initialization over (this one froze past its lease): what exists now is its.
      log.warn({ step, owner: current.ownerId }, "init.abandoned");
      return;
    }
    const stopped = signal.aborted;
    const cause = stopped ? "initialization stopped" : errorMessage(error);
    const description = step ? `${STEP_DISPLAY_NAMES[step]} (${step}) failed: ${cause}` : cause;
    log.warn({ step, err: error }, stopped ? "init.stopped" : "init.failed");
    await workspaces.teardown(task).catch((teardownError) => log.error({ err: teardownError }, "init.cleanup.failed"));
    const reason = signal.reason;
    const ended = !stopped
      ? await status.failInitialization(task.id, description)
      : reason instanceof StopRequest && reason.byUser
        ? await status.stopInitialization(task.id, reason.message)
        : null;
    // Stopped by the server going away, or someone else moved the task first (archived it):
    // only make sure the workspace reads INACTIVE.
    if (!ended) await status.setInitStatus(task.id, InitStatus.INACTIVE, { reason: cause });
    onProgress(task.id, {
      type: "init-error",
      currentStep: step ?? undefined,
      stepName: step ? STEP_DISPLAY_NAMES[step] : undefined,
      stepNumber: step ? steps.indexOf(step) + 1 : undefined,
      totalSteps: steps.length,
      error: description,
    });
  }
}
