/**
 * The `llm` agent: a tool-calling loop on the AI SDK. The model reads and
 * changes the workspace through the tools of llm-tools.ts until it answers
 * without calling a tool, or until the step limit is reached.
 *
 * Invariants:
 * - Output is reported in the order the loop produces it: every tool call is
 *   announced (toolCall) before its result (toolResult), command output
 *   streams between the two, text deltas as they arrive.
 * - run() never throws for model or provider failures (refused requests,
 *   unreachable endpoints, broken streams): it resolves FAILED with a message
 *   that says what went wrong. Failing tools are not failures of the turn:
 *   the model receives the error as the tool's result and carries on.
 * - When the turn's signal aborts, the model call and any running command are
 *   cancelled and run() resolves promptly; the turn service records STOPPED.
 * - Reaching `maxSteps` while the model still asks for tools ends the turn
 *   COMPLETED (its changes are committed like any other turn, and a follow-up
 *   can continue) with a closing note in the text saying the limit was hit.
 * - The runner does not commit: the turn service commits the workspace after
 *   every turn, which the system prompt tells the model.
 * - The result carries the tokens of every model step that finished (the AI
 *   SDK's per-step usage, summed), also when the turn failed later; none
 *   when the provider reported none; never a cost.
 */
import {
  APICallError,
  type LanguageModel,
  LoadAPIKeyError,
  type ModelMessage,
  RetryError,
  stepCountIs,
  streamText,
  type TextStreamPart,
} from "ai";
import { createLlmTools, type LlmTools } from "./llm-tools";
import type { AgentOutput, AgentRunner, AgentTurn, AgentTurnResult, ConversationMessage, TurnUsage } from "./types";

export const DEFAULT_MAX_STEPS = 50;

export const DEFAULT_SYSTEM_PROMPT = `You are a software engineering agent working on a task in a git repository.
The repository is checked out in your workspace, on a branch of its own for this task. You act on it only through your tools:
read_file, write_file, edit_file, list_dir and grep work on files (paths are relative to the repository root),
search_code searches the repository as it was indexed when the workspace was prepared,
and run_command runs shell commands (sh -c) in the repository root, e.g. to build and run tests.

How to work:
- Look before you change: find and read the relevant code first.
- Make the changes the user asked for, keeping to the project's existing style and conventions.
- Check your work where the project allows it (build, tests, linters) and fix what you broke.
- Do not commit, push or switch branches: your changes are committed automatically at the end of the turn.
- Do not start servers or other commands that never exit.
- Finish with a short summary of what you changed and anything the user should know.`;

export interface LlmAgentOptions {
  model: LanguageModel;
  /** Model calls per turn (each may run several tools). Default DEFAULT_MAX_STEPS (50). */
  maxSteps?: number;
  /** Replaces DEFAULT_SYSTEM_PROMPT. */
  systemPrompt?: string;
  /** Retries of a failed model call that the provider marks retryable (rate limits, 5xx). Default 2. */
  maxRetries?: number;
}

export class LlmAgentRunner implements AgentRunner {
  readonly kind = "llm" as const;
  private readonly model: LanguageModel;
  private readonly maxSteps: number;
  private readonly systemPrompt: string;
  private readonly maxRetries: number;

  constructor(options: LlmAgentOptions) {
    this.model = options.model;
    this.maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
    if (!Number.isInteger(this.maxSteps) || this.maxSteps < 1) {
      throw new RangeError(`maxSteps must be a positive integer (got ${options.maxSteps})`);
    }
    this.systemPrompt = options.systemPrompt ?? DEFAULT_SYSTEM_PROMPT;
    this.maxRetries = options.maxRetries ?? 2;
  }

  async run(turn: AgentTurn): Promise<AgentTurnResult> {
    if (turn.signal.aborted) return stopped();
    const { output } = turn;
    let failure: { error: unknown } | undefined;
    let steps = 0;
    let lastFinishReason: string | undefined;
    const usage: TurnUsage = { inputTokens: 0, outputTokens: 0, costUsd: null };
    let usageReported = false;

    try {
      const result = streamText({
        model: this.model,
        system: this.systemPrompt,
        messages: buildMessages(turn.history, turn.message),
        tools: createLlmTools(turn),
        stopWhen: stepCountIs(this.maxSteps),
        abortSignal: turn.signal,
        maxRetries: this.maxRetries,
        // Errors are read from the stream below; without this the SDK would log them itself.
        onError: () => {},
      });

      for await (const part of result.fullStream) {
        if (part.type === "finish-step") {
          steps += 1;
          lastFinishReason = part.finishReason;
          if (part.usage.inputTokens !== undefined || part.usage.outputTokens !== undefined) usageReported = true;
          usage.inputTokens += part.usage.inputTokens ?? 0;
          usage.outputTokens += part.usage.outputTokens ?? 0;
        } else if (part.type === "error") {
          failure ??= { error: part.error };
        } else {
          report(part, output);
        }
      }
    } catch (error) {
      failure ??= { error };
    }

    // Steps that finished were paid for, also when a later one failed.
    const spent = usageReported ? { usage } : {};
    if (turn.signal.aborted) return { ...stopped(), ...spent };
    if (failure) return { status: "FAILED", error: describeModelError(failure.error), ...spent };
    if (lastFinishReason === "tool-calls" && steps >= this.maxSteps) {
      output.text(
        `\n\n[Stopped after ${steps} model steps, the limit for one turn, while more work was planned. ` +
          "The changes so far are kept; send a follow-up message to continue.]",
      );
    }
    return { status: "COMPLETED", ...spent };
  }
}

/** Passes one part of the loop's stream on to the turn's output; parts it has no use for are dropped. */
function report(part: TextStreamPart<LlmTools>, output: AgentOutput): void {
  switch (part.type) {
    case "text-delta":
      if (part.text) output.text(part.text);
      break;
    case "tool-call":
      output.toolCall({ toolCallId: part.toolCallId, toolName: part.toolName, input: part.input });
      break;
    case "tool-result":
      // Preliminary results are progress updates of streaming tools; only the final one counts.
      if (!part.preliminary) {
        output.toolResult({ toolCallId: part.toolCallId, toolName: part.toolName, output: part.output });
      }
      break;
    case "tool-error":
      output.toolResult({
        toolCallId: part.toolCallId,
        toolName: part.toolName,
        output: errorText(part.error),
        isError: true,
      });
      break;
  }
}

/**
 * The conversation as the model sees it: earlier user and assistant messages,
 * then the new message. Tool and system messages of earlier turns are left
 * out: their effects are in the workspace, and replaying tool traffic without
 * the matching calls would be refused by providers.
 */
export function buildMessages(history: ConversationMessage[], message: string): ModelMessage[] {
  const messages: ModelMessage[] = [];
  for (const entry of history) {
    if (!entry.content.trim()) continue;
    if (entry.role === "user") messages.push({ role: "user", content: entry.content });
    else if (entry.role === "assistant") messages.push({ role: "assistant", content: entry.content });
  }
  messages.push({ role: "user", content: message });
  return messages;
}

const DETAIL_LIMIT = 500;

/** A one-line explanation of why the model call failed, for the task's errorMessage. */
export function describeModelError(error: unknown): string {
  if (RetryError.isInstance(error)) {
    const last = describeModelError(error.lastError);
    return error.reason === "maxRetriesExceeded" ? `${last} (gave up after ${error.errors.length} attempts)` : last;
  }
  if (APICallError.isInstance(error)) {
    const detail = clip(error.message);
    const status = error.statusCode;
    if (status === undefined) return `could not reach the model provider at ${error.url}: ${detail}`;
    if (status === 401 || status === 403) {
      return `model provider refused the request: HTTP ${status}: ${detail} (check the API key)`;
    }
    if (status === 404) {
      return `model provider refused the request: HTTP 404: ${detail} (check LLM_MODEL and LLM_BASE_URL)`;
    }
    if (status >= 400 && status < 500) return `model provider refused the request: HTTP ${status}: ${detail}`;
    return `model provider failed: HTTP ${status}: ${detail}`;
  }
  if (LoadAPIKeyError.isInstance(error)) return `model provider is not configured: ${clip(error.message)}`;
  return `model call failed: ${errorText(error)}`;
}

function errorText(error: unknown): string {
  if (error instanceof Error) return clip(error.message || error.name);
  if (typeof error === "string") return clip(error);
  try {
    return clip(JSON.stringify(error));
  } catch {
    return clip(String(error));
  }
}

function clip(text: string): string {
  return text.length <= DETAIL_LIMIT ? text : `${text.slice(0, DETAIL_LIMIT)}…`;
}

function stopped(): AgentTurnResult {
  return { status: "FAILED", error: "the turn was stopped" };
}
