/**
 * A task's conversation: messages persisted in order (a per-task sequence),
 * and the AgentOutput sink that turns an agent's live output into
 * `stream-chunk` events and persisted messages.
 *
 * Text deltas are streamed at once and persisted at boundaries (a tool call,
 * the end of the turn) and at most every `flushMs`, so a long answer costs a
 * handful of writes, not one per token.
 */
import { randomUUID } from "node:crypto";
import { type Db, type MessageRow, messages } from "@repo/db";
import type { MessageRole, StreamChunk } from "@repo/types";
import { asc, eq, sql } from "drizzle-orm";
import type { AgentOutput, ConversationMessage } from "../agent/types";
import type { Clock } from "../utils/clock";
import { DB_READ_RETRY_DEADLINE_MS, DB_RETRY_DEADLINE_MS, retryTransient } from "../utils/db-retry";

export interface MessageLogDeps {
  db: Db;
  clock: Clock;
  emitChunk(taskId: string, chunk: StreamChunk): void;
  /** How long a write is retried while the database connection is lost, in ms. Default 60000. */
  retryDeadlineMs?: number;
}

export class MessageLog {
  constructor(private readonly deps: MessageLogDeps) {}

  list(taskId: string): Promise<MessageRow[]> {
    return retryTransient(
      () => this.deps.db.select().from(messages).where(eq(messages.taskId, taskId)).orderBy(asc(messages.sequence)),
      { deadlineMs: DB_READ_RETRY_DEADLINE_MS },
    );
  }

  async history(taskId: string): Promise<ConversationMessage[]> {
    return (await this.list(taskId)).map((m) => ({ role: m.role, content: m.content, metadata: m.metadata }));
  }

  /** Appends one message with the next sequence number of the task. */
  async append(
    taskId: string,
    role: MessageRole,
    content: string,
    metadata: Record<string, unknown> | null = null,
  ): Promise<MessageRow> {
    const id = randomUUID();
    const [row] = await this.retrying(() =>
      this.deps.db
        .insert(messages)
        .values({
          id,
          taskId,
          role,
          content,
          metadata,
          createdAt: this.deps.clock.now(),
          sequence: sql`(SELECT coalesce(max(${messages.sequence}), 0) + 1 FROM ${messages} WHERE ${messages.taskId} = ${taskId})`,
        })
        .returning(),
    );
    return row!;
  }

  async update(id: string, content: string, metadata?: Record<string, unknown> | null): Promise<void> {
    await this.retrying(() =>
      this.deps.db
        .update(messages)
        .set(metadata === undefined ? { content } : { content, metadata })
        .where(eq(messages.id, id)),
    );
  }

  /** Writes survive a dropped database connection (see db-retry.ts); a lost message is lost work. */
  private retrying<T>(fn: () => Promise<T>): Promise<T> {
    return retryTransient(fn, { deadlineMs: this.deps.retryDeadlineMs ?? DB_RETRY_DEADLINE_MS });
  }

  /**
   * Starts a turn's conversation: appends the user's `message` (unless it is
   * already the last user message, as when an interrupted initialization is
   * restarted) and returns the history the agent gets — every message before
   * it — and the turn's output sink.
   */
  async beginTurn(
    taskId: string,
    message: string,
    options: { append: boolean },
  ): Promise<{ history: ConversationMessage[]; output: TurnOutput }> {
    if (options.append) await this.append(taskId, "user", message);
    const rows = await this.list(taskId);
    const lastUser = rows.findLastIndex((m) => m.role === "user");
    const history = rows
      .slice(0, lastUser < 0 ? rows.length : lastUser)
      .map((m) => ({ role: m.role, content: m.content, metadata: m.metadata }));
    return { history, output: this.openTurn(taskId) };
  }

  /** An AgentOutput for one turn; call `close()` when the turn ends. */
  openTurn(taskId: string, options: { flushMs?: number } = {}): TurnOutput {
    return new TurnOutput(this, taskId, this.deps.emitChunk, options.flushMs ?? 1000);
  }
}

type OpenMessage = { id: string; role: MessageRole; content: string; metadata: Record<string, unknown> | null };

/**
 * Streams and persists one turn's output. Writes are chained so messages are
 * created in the order the agent produced them.
 */
export class TurnOutput implements AgentOutput {
  private open: OpenMessage | null = null;
  private readonly tools = new Map<string, OpenMessage>();
  private chain: Promise<unknown> = Promise.resolve();
  private lastFlush = 0;
  private failure: unknown = null;

  constructor(
    private readonly log: MessageLog,
    private readonly taskId: string,
    private readonly emit: (taskId: string, chunk: StreamChunk) => void,
    private readonly flushMs: number,
  ) {}

  text(delta: string): void {
    this.appendStreaming("assistant", { kind: "text" }, delta, "text");
  }

  commandOutput(stream: "stdout" | "stderr", text: string): void {
    this.appendStreaming("tool", { kind: "command-output" }, text, stream);
  }

  toolCall(call: { toolCallId: string; toolName: string; input: unknown }): void {
    this.closeOpen();
    const message: OpenMessage = {
      id: "",
      role: "tool",
      content: "",
      metadata: { kind: "tool-call", toolCallId: call.toolCallId, toolName: call.toolName, input: call.input },
    };
    this.tools.set(call.toolCallId, message);
    this.enqueue(async () => {
      const row = await this.log.append(this.taskId, "tool", "", message.metadata);
      message.id = row.id;
      this.emit(this.taskId, { type: "message-start", messageId: row.id, role: "tool" });
      this.emit(this.taskId, { type: "tool-call", messageId: row.id, ...call });
    });
  }

  toolResult(result: { toolCallId: string; toolName: string; output: unknown; isError?: boolean }): void {
    const message = this.tools.get(result.toolCallId);
    this.tools.delete(result.toolCallId);
    const content = typeof result.output === "string" ? result.output : JSON.stringify(result.output ?? null);
    this.enqueue(async () => {
      const metadata = { ...(message?.metadata ?? {}), output: result.output, isError: result.isError ?? false };
      let messageId = message?.id;
      if (messageId) {
        await this.log.update(messageId, content, metadata);
      } else {
        messageId = (await this.log.append(this.taskId, "tool", content, metadata)).id;
      }
      this.emit(this.taskId, { type: "tool-result", messageId, ...result });
      this.emit(this.taskId, { type: "message-end", messageId });
    });
  }

  /** Persists everything still open and waits for all writes. Rejects if a write failed. */
  async close(): Promise<void> {
    this.closeOpen();
    await this.chain;
    if (this.failure) throw this.failure;
  }

  private appendStreaming(
    role: MessageRole,
    metadata: Record<string, unknown>,
    text: string,
    chunkType: "text" | "stdout" | "stderr",
  ): void {
    if (!text) return;
    if (this.open && (this.open.role !== role || this.open.metadata?.kind !== metadata.kind)) this.closeOpen();
    if (!this.open) {
      const message: OpenMessage = { id: "", role, content: "", metadata };
      this.open = message;
      this.enqueue(async () => {
        const row = await this.log.append(this.taskId, role, "", metadata);
        message.id = row.id;
        this.emit(this.taskId, { type: "message-start", messageId: row.id, role: role as "assistant" | "tool" });
      });
    }
    const message = this.open;
    message.content += text;
    this.enqueue(async () => {
      this.emit(this.taskId, { type: chunkType, messageId: message.id, text });
      const now = Date.now();
      if (now - this.lastFlush >= this.flushMs) {
        this.lastFlush = now;
        await this.log.update(message.id, message.content);
      }
    });
  }

  private closeOpen(): void {
    const message = this.open;
    if (!message) return;
    this.open = null;
    this.enqueue(async () => {
      await this.log.update(message.id, message.content);
      this.emit(this.taskId, { type: "message-end", messageId: message.id });
    });
  }

  private enqueue(work: () => Promise<void>): void {
    this.chain = this.chain.then(work).catch((error) => {
      this.failure ??= error;
    });
  }
}
