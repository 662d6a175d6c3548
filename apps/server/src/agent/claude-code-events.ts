/**
 * Claude Code's `--output-format stream-json --verbose --include-partial-messages`
 * event stream, read onto AgentOutput:
 * - assistant text as it streams (`stream_event` text deltas), or whole from
 *   the `assistant` message when it was not streamed;
 * - `tool_use` blocks of `assistant` messages → toolCall; `tool_result`
 *   blocks of `user` messages → toolResult;
 * - the `result` event → the outcome, the session and the usage (tokens
 *   including cache reads and writes, and the cost Claude Code computes).
 *
 * Invariants:
 * - Only the main conversation is shown: events of subagents (with a
 *   `parent_tool_use_id`) are skipped; the subagent's answer arrives as the
 *   result of the tool call that started it.
 * - Error notices Claude Code writes as assistant messages
 *   (`is_api_error_message`) are not shown as text: they end the turn
 *   through the `result` event.
 * - A refused key (HTTP 401/403 on a retry notice) is fatal at once: Claude
 *   Code would otherwise retry it for minutes.
 * - Unknown events and blocks are ignored, so newer CLI versions degrade to
 *   showing less, never to failing.
 */
import { z } from "zod";
import { type CliEventMapping, type CliExit, exitReason } from "./cli-agent";
import type { AgentOutput, AgentSession, AgentTurnResult } from "./types";

const Subagent = { parent_tool_use_id: z.string().nullish() };

const SystemEvent = z.object({
  type: z.literal("system"),
  subtype: z.string(),
  session_id: z.string().optional(),
  error_status: z.number().nullish(),
  error: z.string().nullish(),
});

const StreamEvent = z.object({
  type: z.literal("stream_event"),
  ...Subagent,
  event: z.object({
    type: z.string(),
    message: z.object({ id: z.string() }).optional(),
    content_block: z.object({ type: z.string() }).optional(),
    delta: z.object({ type: z.string(), text: z.string().optional() }).optional(),
  }),
});

const AssistantEvent = z.object({
  type: z.literal("assistant"),
  ...Subagent,
  is_api_error_message: z.boolean().optional(),
  message: z.object({ id: z.string().optional(), content: z.array(z.unknown()) }),
});

const UserEvent = z.object({
  type: z.literal("user"),
  ...Subagent,
  message: z.object({ content: z.union([z.string(), z.array(z.unknown())]) }),
});

const ResultEvent = z.object({
  type: z.literal("result"),
  subtype: z.string(),
  is_error: z.boolean(),
  result: z.string().optional(),
  errors: z.array(z.string()).optional(),
  session_id: z.string().optional(),
  total_cost_usd: z.number().optional(),
  usage: z
    .object({
      input_tokens: z.number(),
      output_tokens: z.number(),
      cache_creation_input_tokens: z.number().optional(),
      cache_read_input_tokens: z.number().optional(),
    })
    .optional(),
});
type ResultEvent = z.infer<typeof ResultEvent>;

const TextBlock = z.object({ type: z.literal("text"), text: z.string() });
const ToolUseBlock = z.object({ type: z.literal("tool_use"), id: z.string(), name: z.string(), input: z.unknown() });
const ToolResultBlock = z.object({
  type: z.literal("tool_result"),
  tool_use_id: z.string(),
  content: z.union([z.string(), z.array(z.unknown())]).optional(),
  is_error: z.boolean().optional(),
});

export interface ClaudeCodeEventOptions {
  /** The session this turn asked to resume; null for a new one. */
  resumeSessionId: string | null;
}

export class ClaudeCodeEvents implements CliEventMapping {
  fatalError: string | null = null;
  private sessionId: string | null = null;
  private result: ResultEvent | null = null;
  /** Ids of the model messages whose text arrived as deltas (their whole text is not shown again). */
  private readonly streamed = new Set<string>();
  private streaming: string | null = null;
  private lastWasText = false;
  private readonly toolNames = new Map<string, string>();

  constructor(
    private readonly output: AgentOutput,
    private readonly options: ClaudeCodeEventOptions,
  ) {}

  event(value: unknown): void {
    const type = (value as { type?: unknown } | null)?.type;
    if (type === "system") this.system(SystemEvent.safeParse(value).data);
    else if (type === "stream_event") this.streamEvent(StreamEvent.safeParse(value).data);
    else if (type === "assistant") this.assistant(AssistantEvent.safeParse(value).data);
    else if (type === "user") this.user(UserEvent.safeParse(value).data);
    else if (type === "result") {
      const result = ResultEvent.safeParse(value).data;
      if (result) {
        this.result = result;
        this.sessionId = result.session_id ?? this.sessionId;
      }
    }
  }

  finish(exit: CliExit): AgentTurnResult {
    const session: AgentSession | undefined = this.sessionId ? { id: this.sessionId } : undefined;
    const result = this.result;
    if (!result) return { status: "FAILED", error: exitReason("Claude Code", exit), session };
    const usage = result.usage && {
      inputTokens:
        result.usage.input_tokens +
        (result.usage.cache_creation_input_tokens ?? 0) +
        (result.usage.cache_read_input_tokens ?? 0),
      outputTokens: result.usage.output_tokens,
      costUsd: result.total_cost_usd ?? null,
    };
    if (!result.is_error) return { status: "COMPLETED", session, usage };
    const detail = result.result?.trim() || result.errors?.join("; ") || result.subtype;
    return { status: "FAILED", error: `Claude Code failed: ${detail}`, session, usage };
  }

  private system(event: z.infer<typeof SystemEvent> | undefined): void {
    if (!event) return;
    if (event.subtype === "init" && event.session_id) {
      this.sessionId = event.session_id;
      const resumed = this.options.resumeSessionId;
      if (resumed && resumed !== event.session_id) {
        this.say("[The agent's earlier session was not found, so this turn starts a new conversation.]");
      }
    } else if (event.subtype === "api_retry" && (event.error_status === 401 || event.error_status === 403)) {
      const why = event.error ? ` ${event.error}` : "";
      this.fatalError = `the model provider refused the API key (HTTP ${event.error_status}${why}); check ANTHROPIC_API_KEY`;
    }
  }

  private streamEvent(event: z.infer<typeof StreamEvent> | undefined): void {
    if (!event || event.parent_tool_use_id) return;
    const { type, message, content_block, delta } = event.event;
    if (type === "message_start" && message) this.streaming = message.id;
    else if (type === "content_block_start" && content_block?.type === "text") this.startText();
    else if (type === "content_block_delta" && delta?.type === "text_delta" && delta.text) {
      if (this.streaming) this.streamed.add(this.streaming);
      this.output.text(delta.text);
      this.lastWasText = true;
    }
  }

  private assistant(event: z.infer<typeof AssistantEvent> | undefined): void {
    if (!event || event.parent_tool_use_id || event.is_api_error_message) return;
    const alreadyStreamed = event.message.id !== undefined && this.streamed.has(event.message.id);
    for (const raw of event.message.content) {
      const text = TextBlock.safeParse(raw).data;
      if (text && !alreadyStreamed && text.text) this.say(text.text);
      const tool = ToolUseBlock.safeParse(raw).data;
      if (tool) {
        this.toolNames.set(tool.id, tool.name);
        this.output.toolCall({ toolCallId: tool.id, toolName: tool.name, input: tool.input ?? {} });
        this.lastWasText = false;
      }
    }
  }

  private user(event: z.infer<typeof UserEvent> | undefined): void {
    if (!event || event.parent_tool_use_id || typeof event.message.content === "string") return;
    for (const raw of event.message.content) {
      const block = ToolResultBlock.safeParse(raw).data;
      if (!block) continue;
      this.output.toolResult({
        toolCallId: block.tool_use_id,
        toolName: this.toolNames.get(block.tool_use_id) ?? "unknown",
        output: toolResultText(block.content),
        isError: block.is_error ?? false,
      });
      this.lastWasText = false;
    }
  }

  /** A new block of text: separated from text just before it, which belongs to another block. */
  private startText(): void {
    if (this.lastWasText) this.output.text("\n\n");
  }

  private say(text: string): void {
    this.startText();
    this.output.text(text);
    this.lastWasText = true;
  }
}

/** A tool result's content as text: a string, or the text blocks of a content list. */
function toolResultText(content: string | unknown[] | undefined): string {
  if (content === undefined) return "";
  if (typeof content === "string") return content;
  return content
    .map((block) => {
      const text = TextBlock.safeParse(block).data;
      return text ? text.text : `[${(block as { type?: string } | null)?.type ?? "content"}]`;
    })
    .join("\n");
}
