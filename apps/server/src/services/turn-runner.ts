/**
 * The work of a task, in the background: (re-)initialization when the
 * workspace needs it, then one agent turn — and the only component that ends
 * a turn.
 *
 * A turn runs the agent on the user's message, streams and persists its
 * output, then commits every change in the workspace to the task branch and
 * saves it in the repository store, and only then ends the turn COMPLETED,
 * FAILED or STOPPED (`endTurn`; in remote mode the warm window starts in the
 * same write). So a task that reads COMPLETED always has its work in the store.
 *
 * The agent is the task's own choice (`agent`, `model`), a runner made for
 * the turn by the injected factory. It gets the task's state directory as
 * its HOME and the session the previous turn left (AgentState); whatever the
 * outcome, the session it returns and its usage are recorded with the turn
 * (turn-records.ts) before the turn ends. Everything the agent reports, and
 * the turn's error, is redacted of the task's secrets (`secretsFor`: the
 * configured credentials, and whatever else names a secret for the task).
 *
 * The agent's commands get the repository environment's variables and the
 * secrets it names for the agent (environments/task-environment.ts); every
 * secret in the environment's scope is redacted too.
 *
 * Work is tracked per task with an AbortController: stop() aborts it and
 * waits until it has ended (and saved), it never writes a status itself. At
 * most one piece of work runs per task in this process; the status moves
 * that start work (compare-and-set) keep it to one across processes, and
 * make this process the work's owner (services/task-ownership.ts renews the
 * lease of every task in `runningTaskIds()`). Work whose ownership was taken
 * over by another process is abandoned: aborted, its end refused.
 */
import type { TaskRow } from "@repo/db";
import { type AgentKind, TaskStatus } from "@repo/types";
import type { ToolExecutor } from "@repo/workspace";
import type { AgentChoiceOfTask } from "../agent/catalog";
import type { AgentRunner, AgentTurnResult, ConversationMessage } from "../agent/types";
import { type TaskEnvironment, type TaskEnvironments, withCommandEnvironment } from "../environments/task-environment";
import { errorMessage, StopRequest } from "../errors";
import type { WorkspaceManager } from "../execution/types";
import type { TaskInitializationEngine } from "../initialization";
import type { Logger } from "../logger";
import { searchCode } from "../repository/code-search";
import type { RepositoryIndexer } from "../repository/indexer";
import type { Clock } from "../utils/clock";
import type { Secret } from "../utils/redaction";
import type { TurnOutcome } from "../utils/task-moves";
import type { TaskStatusStore } from "../utils/task-status";
import type { MessageLog, TurnOutput } from "./message-log";
import type { EndedTurn, TurnRecords } from "./turn-records";

export interface TurnRunnerDeps {
  status: TaskStatusStore;
  engine: TaskInitializationEngine;
  workspaces: WorkspaceManager;
  /** The runner of one turn for the task's choice of agent. */
  agentFor(choice: AgentChoiceOfTask): AgentRunner;
  /** The named secret values the task's agent output is redacted of. */
  secretsFor(task: TaskRow): Promise<Secret[]>;
  records: TurnRecords;
  messages: MessageLog;
  indexer: RepositoryIndexer;
  environments: TaskEnvironments;
  clock: Clock;
  /** Hears every ended turn, after it ended (its record included, when that could be written). */
  emitTurnEnd(turn: EndedTurn, error?: string): void;
  /**
   * Runs on the ready workspace just before the agent (delivery takes in
   * commits pushed to the task's remote branch). Must not throw.
   */
  beforeTurn?(task: TaskRow): Promise<void>;
  log: Logger;
}

export interface StartOptions {
  /** Provision the workspace first (the task is INITIALIZING). */
  initialize: boolean;
  /** The warm workspace's executor, when the caller already reached it. */
  executor?: ToolExecutor;
  /** Append `message` to the conversation (false when it is already there, for a restarted initialization). */
  append?: boolean;
}

interface Work {
  controller: AbortController;
  done: Promise<void>;
}

interface Conversation {
  history: ConversationMessage[];
  output: TurnOutput;
}

export class TurnRunner {
  private readonly work = new Map<string, Work>();

  constructor(private readonly deps: TurnRunnerDeps) {}

  /**
   * Starts the work of a task whose status was just moved (INITIALIZING, or
   * RUNNING on a warm workspace). Resolves once the user's message is
   * recorded; the work goes on in the background.
   */
  async start(task: TaskRow, message: string, options: StartOptions): Promise<void> {
    const conversation = await this.deps.messages.beginTurn(task.id, message, { append: options.append ?? true });
    const controller = new AbortController();
    const log = this.deps.log.child({ taskId: task.id });
    const done = this.runWork(task, message, conversation, options, controller.signal, log)
      .catch((error) => log.error({ err: error }, "run.crashed"))
      .finally(() => {
        if (this.work.get(task.id)?.controller === controller) this.work.delete(task.id);
      });
    this.work.set(task.id, { controller, done });
  }

  /** True while this process runs an initialization or a turn for the task. */
  isRunning(taskId: string): boolean {
    return this.work.has(taskId);
  }

  /** The tasks whose work runs in this process now. */
  runningTaskIds(): string[] {
    return [...this.work.keys()];
  }

  /** Another process took the work over: abort it here (its moves are refused from now on). */
  abandon(taskId: string): void {
    this.work.get(taskId)?.controller.abort(new StopRequest("another server process took the work over", false));
  }

  /** Aborts the task's work and waits until it has ended. False when none ran in this process. */
  async stop(taskId: string, request: StopRequest): Promise<boolean> {
    const work = this.work.get(taskId);
    if (!work) return false;
    work.controller.abort(request);
    await work.done;
    return true;
  }

  /** Stops every piece of work (turns end STOPPED with `reason`) and waits for them to save. */
  async stopAll(reason: string): Promise<void> {
    const request = new StopRequest(reason, false);
    await Promise.all([...this.work.keys()].map((taskId) => this.stop(taskId, request)));
  }

  private async runWork(
    task: TaskRow,
    message: string,
    conversation: Conversation,
    options: StartOptions,
    signal: AbortSignal,
    log: Logger,
  ): Promise<void> {
    let running = task;
    let executor = options.executor;
    if (options.initialize) {
      try {
        await this.deps.engine.initialize(task.id, signal);
      } catch {
        return; // the engine recorded how the initialization ended
      }
      const started = await this.deps.status.startTurn(task.id);
      if (!started) {
        log.info("run.start.skipped");
        return;
      }
      running = started;
      executor = undefined;
    }
    await this.runTurn(running, message, conversation, executor, signal, log);
  }

  /** One turn of a RUNNING task, to its end. Never throws. */
  private async runTurn(
    task: TaskRow,
    message: string,
    { history, output }: Conversation,
    warmExecutor: ToolExecutor | undefined,
    signal: AbortSignal,
    log: Logger,
  ): Promise<void> {
    const { workspaces, clock } = this.deps;
    const startedAt = clock.now();
    const started = performance.now();
    const agent = this.deps.agentFor({ kind: task.agent as AgentKind | null, model: task.model });
    const result = await this.runAgent(agent, task, message, history, output, warmExecutor, signal, log);
    await output.close().catch((error) => log.error({ err: error }, "turn.output.persist.failed"));

    let saveError: string | null = null;
    try {
      await workspaces.saveWork(task, commitMessage(message));
    } catch (error) {
      log.error({ err: { message: output.redact(errorMessage(error)) } }, "turn.save.failed");
      saveError = `saving the workspace failed: ${errorMessage(error)}`;
    }
    const decided = turnOutcome(result, signal, saveError);
    const outcome = decided.outcome;
    const error = decided.error === undefined ? undefined : output.redact(decided.error);
    const endedAt = clock.now();
    log.info({ ms: Math.round(performance.now() - started), agent: agent.kind, outcome }, "turn.end");
    const turn: EndedTurn = {
      taskId: task.id,
      agent: agent.kind,
      model: task.model,
      outcome,
      usage: result.usage,
      session: result.session,
      startedAt,
      endedAt,
    };
    // Before the turn ends: a task that reads COMPLETED has its usage and its session recorded.
    await this.deps.records.record(turn).catch((e) => log.error({ err: e }, "turn.record.failed"));
    const ended = await this.deps.status.endTurn(task.id, outcome, error ?? null);
    if (!ended) log.warn({ outcome }, "turn.end.lost");
    this.deps.emitTurnEnd(turn, error);
  }

  /** Runs the agent with the task's secrets redacted from its output. Never throws. */
  private async runAgent(
    agent: AgentRunner,
    task: TaskRow,
    message: string,
    history: ConversationMessage[],
    output: TurnOutput,
    warmExecutor: ToolExecutor | undefined,
    signal: AbortSignal,
    log: Logger,
  ): Promise<AgentTurnResult> {
    const { workspaces, indexer, environments } = this.deps;
    let taskEnv: TaskEnvironment;
    try {
      taskEnv = await environments.forRepository(task.repoUrl);
      output.redactSecrets([...taskEnv.secrets, ...(await this.deps.secretsFor(task))]);
    } catch (error) {
      // Without the list, nothing could be redacted: the agent does not run.
      log.error({ err: error }, "turn.secrets.failed");
      return { status: "FAILED", error: `could not read the task's secrets: ${errorMessage(error)}` };
    }
    try {
      await this.deps.beforeTurn?.(task);
      const executor = withCommandEnvironment(warmExecutor ?? (await workspaces.executor(task)), taskEnv.agentEnv);
      const home = await workspaces.agentHome(task);
      return await agent.run({
        taskId: task.id,
        message,
        history,
        executor,
        signal,
        output,
        agentState: { home, session: task.agentSession ?? null },
        searchCode: (query, limit) => searchCode({ indexer, executor }, task, query, limit),
      });
    } catch (error) {
      log.error({ err: { message: output.redact(errorMessage(error)) } }, "turn.agent.error");
      return { status: "FAILED", error: `agent error: ${errorMessage(error)}` };
    }
  }
}

/** How a turn ends: stopped wins, then a failure of the agent or of the save (both, when both failed). */
function turnOutcome(
  result: AgentTurnResult,
  signal: AbortSignal,
  saveError: string | null,
): { outcome: TurnOutcome; error?: string } {
  if (signal.aborted) {
    return { outcome: TaskStatus.STOPPED, error: saveError ?? errorMessage(signal.reason ?? "stopped") };
  }
  if (result.status === "FAILED" || saveError) {
    // A dead sandbox breaks the command first, then the save.
    const agentError = result.status === "FAILED" ? result.error : null;
    return { outcome: TaskStatus.FAILED, error: [agentError, saveError].filter(Boolean).join("; ") };
  }
  return { outcome: TaskStatus.COMPLETED };
}

function commitMessage(message: string): string {
  const first = message.split("\n")[0]!.trim().slice(0, 72);
  return `Umbra turn: ${first || "agent changes"}`;
}
