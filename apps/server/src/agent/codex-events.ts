/**
 * Codex's `codex exec --json` event stream, read onto AgentOutput:
 * - `agent_message` items → assistant text;
 * - `command_execution`, `file_change`, `mcp_tool_call` and `web_search`
 *   items → toolCall when they start, toolResult when they complete (an item
 *   reported only once, completed, gives both);
 * - `thread.started` → the session; `turn.completed` → success and usage;
 *   `turn.failed` and top-level `error` events → the failure reason.
 *
 * Invariants:
 * - Codex reports token usage as running totals of the whole session, so the
 *   turn's usage is the difference from the totals the previous turn
 *   returned (AgentSession.usageTotals); the new totals go back in the
 *   session for the next turn.
 * - `error` events that Codex recovers from (a reconnect) do not fail the
 *   turn: only `turn.failed`, or an end without `turn.completed`, does —
 *   except a refused key (HTTP 401/403), which is fatal at once instead of
 *   after Codex's retries.
 * - `error` items are warnings and are not shown; reasoning and to-do items
 *   are not shown either. Unknown events are ignored.
 */
import { z } from "zod";
import { type CliEventMapping, type CliExit, exitReason } from "./cli-agent";
import type { AgentOutput, AgentSession, AgentTurnResult, TurnUsage } from "./types";

const Item = z.object({ id: z.string(), type: z.string() });

const AgentMessage = z.object({ text: z.string() });
const CommandExecution = z.object({
  command: z.string(),
  aggregated_output: z.string().optional(),
  exit_code: z.number().nullish(),
  status: z.string().optional(),
});
const FileChange = z.object({
  changes: z.array(z.object({ path: z.string(), kind: z.string() })),
  status: z.string().optional(),
});
const McpToolCall = z.object({
  server: z.string(),
  tool: z.string(),
  arguments: z.unknown().optional(),
  result: z.unknown().optional(),
  error: z.object({ message: z.string() }).nullish(),
  status: z.string().optional(),
});
const WebSearch = z.object({ query: z.string() });

const ThreadStarted = z.object({ type: z.literal("thread.started"), thread_id: z.string() });
const ItemEvent = z.object({
  type: z.enum(["item.started", "item.updated", "item.completed"]),
  item: Item.loose(),
});
const TurnCompleted = z.object({
  type: z.literal("turn.completed"),
  usage: z.object({ input_tokens: z.number(), output_tokens: z.number() }).optional(),
});
const TurnFailed = z.object({ type: z.literal("turn.failed"), error: z.object({ message: z.string() }).optional() });
const ErrorEvent = z.object({ type: z.literal("error"), message: z.string() });

export interface CodexEventOptions {
  /** The session this turn asked to resume; null for a new one. */
  resume: AgentSession | null;
}

/** A tool-like item as shown: its name, its input, and its result once complete. */
interface ToolView {
  toolName: string;
  input: unknown;
  output: unknown;
  isError: boolean;
}

export class CodexEvents implements CliEventMapping {
  fatalError: string | null = null;
  private threadId: string | null = null;
  private totals: { inputTokens: number; outputTokens: number } | null = null;
  private completed = false;
  private failure: string | null = null;
  private lastError: string | null = null;
  private readonly started = new Set<string>();
  private lastWasText = false;

  constructor(
    private readonly output: AgentOutput,
    private readonly options: CodexEventOptions,
  ) {}

  event(value: unknown): void {
    const type = (value as { type?: unknown } | null)?.type;
    if (type === "thread.started") this.threadStarted(ThreadStarted.safeParse(value).data);
    else if (type === "item.started" || type === "item.completed") this.item(ItemEvent.safeParse(value).data);
    else if (type === "turn.completed") {
      const event = TurnCompleted.safeParse(value).data;
      if (!event) return;
      this.completed = true;
      if (event.usage) {
        this.totals = { inputTokens: event.usage.input_tokens, outputTokens: event.usage.output_tokens };
      }
    } else if (type === "turn.failed") {
      const event = TurnFailed.safeParse(value).data;
      if (event) this.failure = event.error?.message ?? this.lastError ?? "the turn failed";
    } else if (type === "error") {
      const event = ErrorEvent.safeParse(value).data;
      if (!event) return;
      this.lastError = event.message;
      // Codex retries a refused key like a dropped connection, for many seconds; it will not get better.
      const refused = /unexpected status 40[13]\b[^)]*/.exec(event.message);
      if (refused) this.fatalError = `the model provider refused the API key (${refused[0]}); check OPENAI_API_KEY`;
    }
  }

  finish(exit: CliExit): AgentTurnResult {
    const session: AgentSession | undefined = this.threadId
      ? { id: this.threadId, ...(this.totals ? { usageTotals: this.totals } : {}) }
      : undefined;
    const usage = this.turnUsage();
    if (this.failure) return { status: "FAILED", error: `Codex failed: ${this.failure}`, session, usage };
    if (this.completed) return { status: "COMPLETED", session, usage };
    const reason = this.lastError ? `Codex failed: ${this.lastError}` : exitReason("Codex", exit);
    return { status: "FAILED", error: reason, session, usage };
  }

  /** This turn's share of the session's running totals. */
  private turnUsage(): TurnUsage | undefined {
    if (!this.totals) return undefined;
    const before = this.threadId === this.options.resume?.id ? this.options.resume?.usageTotals : undefined;
    // Totals below the previous ones mean the session was started afresh: all of it is this turn's.
    const fresh =
      !before || this.totals.inputTokens < before.inputTokens || this.totals.outputTokens < before.outputTokens;
    return {
      inputTokens: this.totals.inputTokens - (fresh ? 0 : before.inputTokens),
      outputTokens: this.totals.outputTokens - (fresh ? 0 : before.outputTokens),
      costUsd: null,
    };
  }

  private threadStarted(event: z.infer<typeof ThreadStarted> | undefined): void {
    if (!event) return;
    this.threadId = event.thread_id;
    const resumed = this.options.resume?.id;
    if (resumed && resumed !== event.thread_id) {
      this.say("[The agent's earlier session was not found, so this turn starts a new conversation.]");
    }
  }

  private item(event: z.infer<typeof ItemEvent> | undefined): void {
    if (!event) return;
    const { item } = event;
    if (item.type === "agent_message") {
      const message = AgentMessage.safeParse(item).data;
      if (event.type === "item.completed" && message?.text) this.say(message.text);
      return;
    }
    const view = toolView(item);
    if (!view) return;
    if (!this.started.has(item.id)) {
      this.started.add(item.id);
      this.output.toolCall({ toolCallId: item.id, toolName: view.toolName, input: view.input });
      this.lastWasText = false;
    }
    if (event.type === "item.completed") {
      this.started.delete(item.id);
      this.output.toolResult({
        toolCallId: item.id,
        toolName: view.toolName,
        output: view.output,
        isError: view.isError,
      });
    }
  }

  private say(text: string): void {
    if (this.lastWasText) this.output.text("\n\n");
    this.output.text(text);
    this.lastWasText = true;
  }
}

/** How a tool-like item is shown; null for items that are not tool calls. */
function toolView(item: z.infer<typeof Item>): ToolView | null {
  switch (item.type) {
    case "command_execution": {
      const command = CommandExecution.safeParse(item).data;
      if (!command) return null;
      const failed = command.status === "failed" || command.status === "declined";
      return {
        toolName: "command_execution",
        input: { command: command.command },
        output: command.aggregated_output ?? "",
        isError: failed || (command.exit_code !== null && command.exit_code !== undefined && command.exit_code !== 0),
      };
    }
    case "file_change": {
      const change = FileChange.safeParse(item).data;
      if (!change) return null;
      return {
        toolName: "file_change",
        input: { changes: change.changes },
        output: change.changes.map((c) => `${c.kind} ${c.path}`).join("\n"),
        isError: change.status === "failed",
      };
    }
    case "mcp_tool_call": {
      const call = McpToolCall.safeParse(item).data;
      if (!call) return null;
      return {
        toolName: `mcp:${call.server}/${call.tool}`,
        input: call.arguments ?? {},
        output: call.error ? call.error.message : (call.result ?? null),
        isError: Boolean(call.error) || call.status === "failed",
      };
    }
    case "web_search": {
      const search = WebSearch.safeParse(item).data;
      if (!search) return null;
      return { toolName: "web_search", input: { query: search.query }, output: "", isError: false };
    }
    default:
      return null;
  }
}
