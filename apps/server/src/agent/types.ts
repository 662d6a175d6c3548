/**
 * The AgentRunner interface: one agent turn on one workspace. Runners act on
 * the workspace only through the ToolExecutor they are given (local directory
 * or remote sidecar alike) and report what they do through AgentOutput, which
 * the turn service streams to the task's room as `stream-chunk` events and
 * persists as messages, in order.
 */
import type { AgentKind, MessageRole } from "@repo/types";
import type { ToolExecutor } from "@repo/workspace";

export interface ConversationMessage {
  role: MessageRole;
  content: string;
  metadata?: Record<string, unknown> | null;
}

export interface SearchHit {
  path: string;
  /** A few lines around the best match. */
  snippet: string;
  rank: number;
}

export interface AgentOutput {
  /** Streams assistant text (a delta, not the whole text so far). */
  text(delta: string): void;
  /**
   * Streams a command's output. A returned promise means the sink is behind:
   * the command's output should wait for it (see RunCommandOptions.onOutput).
   */
  commandOutput(stream: "stdout" | "stderr", text: string): void | Promise<void>;
  /** Announces a tool call before it runs. */
  toolCall(call: { toolCallId: string; toolName: string; input: unknown }): void;
  /** Reports a tool call's result. */
  toolResult(result: { toolCallId: string; toolName: string; output: unknown; isError?: boolean }): void;
}

export interface AgentTurn {
  taskId: string;
  /** The user's message that starts this turn. */
  message: string;
  /** Earlier messages of the task, oldest first (without `message`). */
  history: ConversationMessage[];
  executor: ToolExecutor;
  /** Full-text search over the task's indexed repository commit. */
  searchCode(query: string, limit?: number): Promise<SearchHit[]>;
  /** Fires when the user stops the turn or the server shuts down. */
  signal: AbortSignal;
  output: AgentOutput;
  /**
   * The task's agent state, for the agents that keep one (`claude-code`,
   * `codex`; the others ignore it). Required by those two.
   */
  agentState?: AgentState;
}

/** What an agent CLI keeps between the turns of one task. */
export interface AgentState {
  /**
   * HOME of the agent CLI (its settings, session transcripts, caches): one
   * directory per task, outside the workspace, as seen where the workspace's
   * commands run. It must be the same path, with the same content, on every
   * turn of the task for the session to resume.
   */
  home: string;
  /** The session the previous turn returned (AgentTurnResult.session); null on the first turn. */
  session: AgentSession | null;
}

/** An agent CLI's conversation, to be resumed by the next turn. Persist it as it is returned. */
export interface AgentSession {
  id: string;
  /**
   * Token totals the CLI reported for the whole session so far, for CLIs that
   * report running totals instead of per-turn usage (Codex); the next turn's
   * usage is the difference.
   */
  usageTotals?: { inputTokens: number; outputTokens: number };
}

/** What one turn cost. */
export interface TurnUsage {
  inputTokens: number;
  outputTokens: number;
  /** In US dollars, when the agent reports it (Claude Code); null otherwise. */
  costUsd: number | null;
}

export type AgentTurnResult = ({ status: "COMPLETED" } | { status: "FAILED"; error: string }) & {
  /** The session to pass back in AgentState.session next turn (agents that keep one). */
  session?: AgentSession;
  /** Tokens (and cost) of this turn, when the agent knows them. */
  usage?: TurnUsage;
};

export interface AgentRunner {
  readonly kind: AgentKind;
  /**
   * Runs one turn. Resolves with the outcome; when `signal` aborts, it should
   * stop promptly (the turn service then records STOPPED whatever it returns).
   * It must not throw for agent-level failures: return FAILED with a message.
   */
  run(turn: AgentTurn): Promise<AgentTurnResult>;
}
