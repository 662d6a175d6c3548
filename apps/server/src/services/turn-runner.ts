/**
 * One agent turn on an ACTIVE workspace: run the agent with the user's
 * message, stream and persist its output, then commit every change in the
 * workspace to the task branch and save it in the repository store, and end
 * the turn COMPLETED / FAILED (or STOPPED when it was stopped). In remote
 * mode the warm window starts: `scheduledCleanupAt` = now + the cleanup delay.
 *
 * Saving the work comes before the status write, so a task that reads
 * COMPLETED always has its work in the store.
 */
import type { TaskRow } from "@repo/db";
import { TaskStatus } from "@repo/types";
import type { AgentRunner, AgentTurnResult } from "../agent/types";
import { errorMessage, InvalidTransitionError } from "../errors";
import type { WorkspaceManager } from "../execution/types";
import type { Logger } from "../logger";
import type { RepositoryIndexer } from "../repository/indexer";
import type { Clock } from "../utils/clock";
import type { TaskStatusStore } from "../utils/task-status";
import type { MessageLog } from "./message-log";

export interface TurnRunnerDeps {
  status: TaskStatusStore;
  workspaces: WorkspaceManager;
  agent: AgentRunner;
  messages: MessageLog;
  indexer: RepositoryIndexer;
  clock: Clock;
  /** Warm window after a turn, in ms; only used in remote mode. */
  cleanupDelayMs: number;
  emitTurnEnd(taskId: string, status: "COMPLETED" | "FAILED" | "STOPPED", error?: string): void;
  log: Logger;
}

export class TurnRunner {
  constructor(private readonly deps: TurnRunnerDeps) {}

  /** Runs one turn of a RUNNING task to its end. Never throws. */
  async run(task: TaskRow, message: string, signal: AbortSignal): Promise<void> {
    const { agent, messages, workspaces, log: rootLog } = this.deps;
    const log = rootLog.child({ taskId: task.id });
    const output = messages.openTurn(task.id);
    let result: AgentTurnResult;
    const started = Date.now();
    try {
      const executor = await workspaces.executor(task);
      const history = (await messages.history(task.id)).slice(0, -1);
      result = await agent.run({
        taskId: task.id,
        message,
        history,
        executor,
        signal,
        output,
        searchCode: (query, limit) =>
          task.indexedCommitSha
            ? this.deps.indexer.search(task.repoUrl, task.indexedCommitSha, query, limit)
            : Promise.resolve([]),
      });
    } catch (error) {
      log.error({ err: error }, "turn.agent.error");
      result = { status: "FAILED", error: `agent error: ${errorMessage(error)}` };
    }
    await output.close().catch((error) => log.error({ err: error }, "turn.output.persist.failed"));

    let saveError: string | null = null;
    try {
      await workspaces.saveWork(task, commitMessage(message));
    } catch (error) {
      log.error({ err: error }, "turn.save.failed");
      saveError = `saving the workspace failed: ${errorMessage(error)}`;
    }
    log.info({ ms: Date.now() - started, result: result.status, stopped: signal.aborted }, "turn.end");
    const stopReason = signal.aborted ? errorMessage(signal.reason ?? "stopped") : null;
    await this.finish(task, result, stopReason, saveError, log);
  }

  private async finish(
    task: TaskRow,
    result: AgentTurnResult,
    stopReason: string | null,
    saveError: string | null,
    log: Logger,
  ): Promise<void> {
    const { status, clock, cleanupDelayMs } = this.deps;
    const remote = task.mode === "remote";
    const scheduledCleanupAt = remote ? new Date(clock.now().getTime() + cleanupDelayMs) : undefined;
    let final: "COMPLETED" | "FAILED" | "STOPPED";
    let error: string | undefined;
    const stopped = stopReason !== null;
    if (stopped) {
      final = TaskStatus.STOPPED;
      error = saveError ?? stopReason;
    } else if (result.status === "FAILED" || saveError) {
      final = TaskStatus.FAILED;
      // Both, when both failed: a dead sandbox breaks the command first, then the save.
      const agentError = result.status === "FAILED" ? result.error : null;
      error = [agentError, saveError].filter(Boolean).join("; ");
    } else {
      final = TaskStatus.COMPLETED;
    }
    try {
      await status.setTaskStatus(task.id, final, {
        reason: error ?? "agent finished its turn",
        patch: { errorMessage: error ?? null },
        scheduledCleanupAt,
      });
    } catch (writeError) {
      if (!(writeError instanceof InvalidTransitionError)) {
        log.error({ err: writeError }, "turn.finish.failed");
      } else if (stopped && remote) {
        // The stop handler already wrote STOPPED; the warm window starts now that the work is saved.
        await status
          .scheduleTaskCleanup(task.id, cleanupDelayMs / 60_000, { reason: "turn stopped" })
          .catch((e) => log.warn({ err: e }, "turn.schedule.failed"));
      }
    }
    this.deps.emitTurnEnd(task.id, final, error);
  }
}

function commitMessage(message: string): string {
  const first = message.split("\n")[0]!.trim().slice(0, 72);
  return `Umbra turn: ${first || "agent changes"}`;
}
