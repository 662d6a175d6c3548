/**
 * The AgentOutput of one turn: the agent's text, command output and tool
 * calls become `stream-chunk` events, persisted messages and lines of the
 * task's log file.
 *
 * Invariants:
 * - Bounded: a message stores and streams at most `maxMessageBytes`; the
 *   rest is counted and the message ends with a note "… N bytes omitted"
 *   that points to the task's log. The
 *   task's log (output-log.ts) keeps the full output under its own cap, and
 *   a command is paused while that file is behind, so a flood costs
 *   bounded memory however fast it comes.
 * - Cheap per chunk: output is gathered and leaves in batches — streamed at
 *   most every `streamMs` (or once 64 KiB are waiting), persisted by
 *   appending at most every `flushMs` (or once 64 KiB are waiting) — so a
 *   flood of small chunks costs a handful of writes, not one per chunk, and
 *   at most one batch per message is ever queued.
 * - Ordered: every database write and every event leaves through one chain,
 *   in the order the agent produced them; `message-end` follows the
 *   message's last write, so a client that refetches on it sees it whole.
 * - Nothing is dropped because of its bytes: NUL and lone surrogates are
 *   stored as U+FFFD (storable-text.ts); a failed write is remembered and
 *   reported by `close()`, and the writes after it still run.
 */
import { randomUUID } from "node:crypto";
import type { MessageRole, StreamChunk } from "@repo/types";
import type { AgentOutput } from "../agent/types";
import type { Clock, TimerHandle } from "../utils/clock";
import { splitUtf8, storableJson, storableText, utf8Bytes } from "../utils/storable-text";
import type { TaskOutputLog } from "./output-log";

export interface TurnOutputLimits {
  /** Most content stored and streamed per message, in UTF-8 bytes. Default 10 MiB. */
  maxMessageBytes: number;
  /** Longest time text waits before it is persisted, in ms. Default 1000. */
  flushMs: number;
  /** Longest time text waits before it is streamed, in ms. Default 50. */
  streamMs: number;
}

export const DEFAULT_TURN_OUTPUT_LIMITS: TurnOutputLimits = {
  maxMessageBytes: 10 * 1024 * 1024,
  flushMs: 1000,
  streamMs: 50,
};

/** Waiting text that is persisted or streamed at once, without waiting for the timer, in bytes. */
const BATCH_BYTES = 64 * 1024;
/** Most text one stream-chunk event carries, in bytes. */
const CHUNK_BYTES = 256 * 1024;
/** Most text streamed per batch before the chain yields to other work, in bytes. */
const BURST_BYTES = 1024 * 1024;

/** Where a message's content goes: the MessageLog, seen from here. */
export interface OutputStore {
  append(
    taskId: string,
    role: MessageRole,
    content: string,
    metadata: Record<string, unknown> | null,
    id: string,
  ): Promise<unknown>;
  appendContent(cursor: Cursor, text: string): Promise<Cursor>;
  mergeMetadata(messageId: string, patch: Record<string, unknown>): Promise<void>;
}

type Cursor = { messageId: string; position: number; bytes: number };
type TextChunkType = "text" | "stdout" | "stderr";

/** A message whose content is still arriving. */
class OpenMessage {
  readonly id = randomUUID();
  cursor: Cursor;
  /** Bytes accepted for storing (persisted or waiting). */
  acceptedBytes = 0;
  omittedBytes = 0;
  // Waiting text is kept as the pieces it came in, never concatenated into one growing string:
  // splitting such a string while it grows copies all of it again and again.
  unsaved: string[] = [];
  unsavedBytes = 0;
  unsent: { type: TextChunkType; text: string; bytes: number }[] = [];
  unsentBytes = 0;
  lastType: TextChunkType;
  saveQueued = false;
  sendQueued = false;
  saveTimer: TimerHandle | null = null;
  sendTimer: TimerHandle | null = null;
  closed = false;

  constructor(
    readonly role: MessageRole,
    readonly metadata: Record<string, unknown>,
    type: TextChunkType,
  ) {
    this.cursor = { messageId: this.id, position: 0, bytes: 0 };
    this.lastType = type;
  }

  /** Keeps what fits under the cap; counts the rest. */
  accept(type: TextChunkType, text: string, maxBytes: number): void {
    const [kept, rest] = splitUtf8(text, maxBytes - this.acceptedBytes);
    if (rest) this.omittedBytes += utf8Bytes(rest);
    if (!kept) return;
    const bytes = utf8Bytes(kept);
    this.acceptedBytes += bytes;
    this.unsaved.push(kept);
    this.unsavedBytes += bytes;
    this.unsent.push({ type, text: kept, bytes });
    this.unsentBytes += bytes;
    this.lastType = type;
  }

  /** The waiting text, joined into pieces of about BATCH_BYTES. */
  takeUnsaved(): string[] {
    const batches: string[] = [];
    let batch: string[] = [];
    let bytes = 0;
    for (const piece of this.unsaved) {
      batch.push(piece);
      bytes += utf8Bytes(piece);
      if (bytes >= BATCH_BYTES) {
        batches.push(batch.join(""));
        batch = [];
        bytes = 0;
      }
    }
    if (batch.length > 0) batches.push(batch.join(""));
    this.unsaved = [];
    this.unsavedBytes = 0;
    return batches;
  }

  /** Up to `maxBytes` of the waiting text at the head of the stream, all of one chunk type. */
  takeUnsent(maxBytes: number): { type: TextChunkType; text: string } | null {
    const first = this.unsent[0];
    if (!first) return null;
    const parts: string[] = [];
    let bytes = 0;
    while (this.unsent.length > 0 && this.unsent[0]!.type === first.type && bytes < maxBytes) {
      const next = this.unsent[0]!;
      if (bytes + next.bytes <= maxBytes) {
        parts.push(next.text);
        bytes += next.bytes;
        this.unsent.shift();
        continue;
      }
      const [head, rest] = splitUtf8(next.text, maxBytes - bytes);
      if (!head) break;
      const headBytes = utf8Bytes(head);
      parts.push(head);
      bytes += headBytes;
      next.text = rest;
      next.bytes -= headBytes;
    }
    if (parts.length === 0) {
      // One character larger than the room: send it whole rather than never.
      this.unsent.shift();
      parts.push(first.text);
      bytes = first.bytes;
    }
    this.unsentBytes -= bytes;
    return { type: first.type, text: parts.join("") };
  }

  close(): void {
    this.closed = true;
    this.saveTimer?.cancel();
    this.sendTimer?.cancel();
    this.saveTimer = this.sendTimer = null;
  }
}

export interface TurnOutputDeps {
  store: OutputStore;
  taskId: string;
  emit(taskId: string, chunk: StreamChunk): void;
  clock: Clock;
  log: TaskOutputLog;
  limits?: Partial<TurnOutputLimits>;
}

export class TurnOutput implements AgentOutput {
  private open: OpenMessage | null = null;
  private readonly tools = new Map<string, string>();
  private chain: Promise<unknown> = Promise.resolve();
  private failure: unknown = null;
  private readonly limits: TurnOutputLimits;

  constructor(private readonly deps: TurnOutputDeps) {
    this.limits = { ...DEFAULT_TURN_OUTPUT_LIMITS, ...definedOnly(deps.limits ?? {}) };
  }

  text(delta: string): void {
    void this.appendStreaming("assistant", { kind: "text" }, delta, "text");
  }

  /** Returns a promise while the task's log is behind: the command's output should wait for it. */
  commandOutput(stream: "stdout" | "stderr", text: string): Promise<void> | undefined {
    return this.appendStreaming("tool", { kind: "command-output" }, text, stream);
  }

  toolCall(call: { toolCallId: string; toolName: string; input: unknown }): void {
    this.closeOpen();
    const id = randomUUID();
    this.tools.set(call.toolCallId, id);
    const metadata = { kind: "tool-call", toolCallId: call.toolCallId, toolName: call.toolName, input: call.input };
    this.deps.log.heading(`tool call ${call.toolName} (message ${id}): ${preview(call.input)}`);
    this.enqueue(async () => {
      await this.deps.store.append(this.deps.taskId, "tool", "", storableJson(metadata), id);
      this.emit({ type: "message-start", messageId: id, role: "tool" });
      this.emit({ type: "tool-call", messageId: id, ...storableJson(call) });
    });
  }

  toolResult(result: { toolCallId: string; toolName: string; output: unknown; isError?: boolean }): void {
    const known = this.tools.get(result.toolCallId);
    this.tools.delete(result.toolCallId);
    const raw = typeof result.output === "string" ? result.output : JSON.stringify(result.output ?? null);
    this.deps.log.heading(`tool result ${result.toolName} (message ${known ?? "new"})`);
    this.deps.log.write(raw);
    const [content, rest] = splitUtf8(storableText(raw), this.limits.maxMessageBytes);
    const omittedBytes = rest ? utf8Bytes(rest) : 0;
    const stored = rest ? `${content}${omissionNote(omittedBytes, this.deps.taskId)}` : content;
    // An output over the cap is kept (and sent) only as its capped text, in the metadata too.
    const output = rest ? stored : storableJson(result.output ?? null);
    const patch = { output, isError: result.isError ?? false, ...(rest ? { omittedBytes } : {}) };
    this.enqueue(async () => {
      let messageId = known;
      if (messageId) {
        await this.deps.store.appendContent({ messageId, position: 0, bytes: 0 }, stored);
        await this.deps.store.mergeMetadata(messageId, patch);
      } else {
        messageId = randomUUID();
        const metadata = { kind: "tool-call", toolCallId: result.toolCallId, toolName: result.toolName, ...patch };
        await this.deps.store.append(this.deps.taskId, "tool", stored, metadata, messageId);
      }
      this.emit({ type: "tool-result", messageId, ...result, output });
      this.emit({ type: "message-end", messageId });
    });
  }

  /** Persists everything still open, waits for every write and closes the log. Rejects if a write failed. */
  async close(): Promise<void> {
    this.closeOpen();
    await this.chain;
    await this.deps.log.close();
    if (this.failure) throw this.failure;
  }

  private appendStreaming(
    role: MessageRole,
    metadata: Record<string, unknown>,
    text: string,
    type: TextChunkType,
  ): Promise<void> | undefined {
    if (!text) return undefined;
    if (this.open && (this.open.role !== role || this.open.metadata.kind !== metadata.kind)) this.closeOpen();
    const message = this.open ?? this.openMessage(role, metadata, type);
    const logReady = this.deps.log.write(text);
    // Once a message is full, its output is only counted: a flood costs no more than its byte count here.
    if (message.acceptedBytes >= this.limits.maxMessageBytes) message.omittedBytes += utf8Bytes(text);
    else message.accept(type, storableText(text), this.limits.maxMessageBytes);
    this.scheduleSend(message);
    this.scheduleSave(message);
    return logReady ? undefined : this.deps.log.drained();
  }

  private openMessage(role: MessageRole, metadata: Record<string, unknown>, type: TextChunkType): OpenMessage {
    const message = new OpenMessage(role, metadata, type);
    this.open = message;
    this.deps.log.heading(`${type === "text" ? "assistant" : "command output"} (message ${message.id})`);
    this.enqueue(async () => {
      await this.deps.store.append(this.deps.taskId, role, "", metadata, message.id);
      this.emit({ type: "message-start", messageId: message.id, role: role as "assistant" | "tool" });
    });
    return message;
  }

  /**
   * Streams waiting text: at once when a batch is full (unless a burst just
   * left, so sockets get to write it), else when the stream timer fires.
   */
  private scheduleSend(message: OpenMessage, atOnce = true): void {
    if (message.closed || message.sendQueued || message.unsentBytes === 0) return;
    if (atOnce && message.unsentBytes >= BATCH_BYTES) this.queueSend(message);
    else message.sendTimer ??= this.deps.clock.setTimer(() => this.queueSend(message), this.limits.streamMs);
  }

  private queueSend(message: OpenMessage): void {
    message.sendTimer?.cancel();
    message.sendTimer = null;
    if (message.closed || message.sendQueued) return;
    message.sendQueued = true;
    this.enqueue(async () => {
      message.sendQueued = false;
      this.send(message, BURST_BYTES);
      this.scheduleSend(message, false);
    });
  }

  /** Persists waiting text: at once when a batch is full, else when the flush timer fires. */
  private scheduleSave(message: OpenMessage): void {
    if (message.closed || message.saveQueued || message.unsavedBytes === 0) return;
    if (message.unsavedBytes >= BATCH_BYTES) this.queueSave(message);
    else message.saveTimer ??= this.deps.clock.setTimer(() => this.queueSave(message), this.limits.flushMs);
  }

  private queueSave(message: OpenMessage): void {
    message.saveTimer?.cancel();
    message.saveTimer = null;
    if (message.closed || message.saveQueued) return;
    message.saveQueued = true;
    this.enqueue(async () => {
      message.saveQueued = false;
      await this.save(message);
      this.scheduleSave(message);
    });
  }

  /** Streams up to `budget` bytes of what is waiting, in chunks of at most CHUNK_BYTES. */
  private send(message: OpenMessage, budget: number): void {
    let left = budget;
    while (left > 0) {
      const chunk = message.takeUnsent(Math.min(CHUNK_BYTES, left));
      if (!chunk) return;
      this.emit({ type: chunk.type, messageId: message.id, text: chunk.text });
      left -= utf8Bytes(chunk.text);
    }
  }

  private async save(message: OpenMessage): Promise<void> {
    for (const batch of message.takeUnsaved()) {
      message.cursor = await this.deps.store.appendContent(message.cursor, batch);
    }
  }

  private closeOpen(): void {
    const message = this.open;
    if (!message) return;
    this.open = null;
    message.close();
    this.enqueue(async () => {
      while (message.unsentBytes > 0) {
        this.send(message, BURST_BYTES);
        // Let the sockets write what was just emitted before the next burst.
        if (message.unsentBytes > 0) await new Promise((resolve) => setImmediate(resolve));
      }
      await this.save(message);
      if (message.omittedBytes > 0) {
        const note = omissionNote(message.omittedBytes, this.deps.taskId);
        message.cursor = await this.deps.store.appendContent(message.cursor, note);
        await this.deps.store.mergeMetadata(message.id, { omittedBytes: message.omittedBytes });
        this.emit({ type: message.lastType, messageId: message.id, text: note });
      }
      this.emit({ type: "message-end", messageId: message.id });
    });
  }

  private emit(chunk: StreamChunk): void {
    this.deps.emit(this.deps.taskId, chunk);
  }

  private enqueue(work: () => Promise<void>): void {
    this.chain = this.chain.then(work).catch((error) => {
      this.failure ??= error;
    });
  }
}

/** The end of a message whose output did not all fit. */
export function omissionNote(omittedBytes: number, taskId: string): string {
  return `\n… ${omittedBytes} bytes omitted; the task's log has the full output (GET /api/tasks/${taskId}/log)`;
}

function preview(value: unknown): string {
  const json = JSON.stringify(value ?? null) ?? "null";
  return json.length > 2000 ? `${json.slice(0, 2000)}…` : json;
}

function definedOnly<T extends object>(values: Partial<T>): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined)) as Partial<T>;
}
