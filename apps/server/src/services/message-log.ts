/**
 * A task's conversation: messages persisted in order (a per-task sequence).
 * Agent output reaches it through a TurnOutput (turn-output.ts), which
 * streams it and grows the message by appending.
 *
 * Invariants:
 * - Content only ever grows by appending (SQL concatenation); nothing
 *   rewrites a whole message. A long content is a chain of segments of at
 *   most SEGMENT_BYTES (`messages.content`, then `message_segments` rows), so
 *   one write costs at most one segment however long the message gets, and
 *   the event loop gets a turn between two writes.
 * - An append is idempotent: it names the length the segment has before it,
 *   so a write retried after a lost connection never doubles its text.
 * - What is stored is storable: NUL and lone surrogates become U+FFFD
 *   (storable-text.ts), in content and in metadata.
 */
import { randomUUID } from "node:crypto";
import { type Db, type MessageRow, messageSegments, messages, queryRows } from "@repo/db";
import type { MessageRole, StreamChunk } from "@repo/types";
import { and, asc, eq, sql } from "drizzle-orm";
import type { ConversationMessage } from "../agent/types";
import type { Clock } from "../utils/clock";
import { DB_RETRY_DEADLINE_MS, retryRead, retryTransient } from "../utils/db-retry";
import { splitUtf8, storableJson, storableText, utf8Bytes } from "../utils/storable-text";
import type { OutputLogs } from "./output-log";
import { TurnOutput, type TurnOutputLimits } from "./turn-output";

export type { TurnOutput } from "./turn-output";

/** Largest segment of a message's content, in UTF-8 bytes. */
export const SEGMENT_BYTES = 64 * 1024;
/** Segments read per query when a long message is loaded (about 2 MiB). */
const SEGMENTS_PER_READ = 32;

export interface MessageLogDeps {
  db: Db;
  clock: Clock;
  emitChunk(taskId: string, chunk: StreamChunk): void;
  /** The task logs that receive every turn's full output. */
  outputs: OutputLogs;
  /** Caps of one turn's output; see TurnOutputLimits for the defaults. */
  limits?: Partial<TurnOutputLimits>;
  /** How long a write is retried while the database connection is lost, in ms. Default 60000. */
  retryDeadlineMs?: number;
}

/** Where the next appended text of a message goes. */
export interface ContentCursor {
  messageId: string;
  /** 0 = `messages.content`, n = segment n. */
  position: number;
  /** Bytes already in that segment. */
  bytes: number;
}

export class MessageLog {
  constructor(private readonly deps: MessageLogDeps) {}

  /** The task's messages in order, each with its whole content. */
  async list(taskId: string): Promise<MessageRow[]> {
    const rows = await this.reading(() =>
      this.deps.db.select().from(messages).where(eq(messages.taskId, taskId)).orderBy(asc(messages.sequence)),
    );
    const overflow = await this.segmentsOf(taskId);
    if (overflow.size === 0) return rows;
    return rows.map((row) => {
      const rest = overflow.get(row.id);
      return rest ? { ...row, content: row.content + rest.join("") } : row;
    });
  }

  async history(taskId: string): Promise<ConversationMessage[]> {
    return (await this.list(taskId)).map((m) => ({ role: m.role, content: m.content, metadata: m.metadata }));
  }

  /**
   * Appends one message with the next sequence number of the task. A long
   * `content` is stored in segments, like streamed output.
   */
  async append(
    taskId: string,
    role: MessageRole,
    content: string,
    metadata: Record<string, unknown> | null = null,
    id: string = randomUUID(),
  ): Promise<MessageRow> {
    const text = storableText(content);
    const [head, rest] = splitUtf8(text, SEGMENT_BYTES);
    const [row] = await this.retrying(() =>
      this.deps.db
        .insert(messages)
        .values({
          id,
          taskId,
          role,
          content: head,
          metadata: metadata === null ? null : storableJson(metadata),
          createdAt: this.deps.clock.now(),
          sequence: sql`(SELECT coalesce(max(${messages.sequence}), 0) + 1 FROM ${messages} WHERE ${messages.taskId} = ${taskId})`,
        })
        .onConflictDoNothing({ target: messages.id })
        .returning(),
    );
    // No row back: an earlier attempt of this insert committed before its connection was lost.
    const stored =
      row ?? (await this.reading(() => this.deps.db.select().from(messages).where(eq(messages.id, id))))[0];
    if (!stored) throw new Error(`message ${id} was neither inserted nor found`);
    if (rest) await this.appendContent({ messageId: id, position: 0, bytes: utf8Bytes(head) }, rest);
    return { ...stored, content: text };
  }

  /**
   * Appends storable `text` at `cursor`, one bounded write per segment it
   * touches; returns where the next append goes.
   */
  async appendContent(cursor: ContentCursor, text: string): Promise<ContentCursor> {
    let at = cursor;
    let remaining = text;
    while (remaining) {
      if (at.bytes >= SEGMENT_BYTES) at = { messageId: at.messageId, position: at.position + 1, bytes: 0 };
      const [piece, rest] = splitUtf8(remaining, SEGMENT_BYTES - at.bytes);
      // A character longer than the room left: start the next segment with it.
      if (!piece) {
        at = { messageId: at.messageId, position: at.position + 1, bytes: 0 };
        continue;
      }
      await this.writePiece(at, piece);
      at = { ...at, bytes: at.bytes + utf8Bytes(piece) };
      remaining = rest;
      // The embedded database runs a query on this thread and settles it without a turn of the event loop;
      // without this, a long content's writes would hold the loop (and every request) until the last one.
      await new Promise((resolve) => setImmediate(resolve));
    }
    return at;
  }

  /** Merges `patch` into the message's metadata. */
  async mergeMetadata(messageId: string, patch: Record<string, unknown>): Promise<void> {
    const json = JSON.stringify(storableJson(patch));
    await this.retrying(() =>
      this.deps.db
        .update(messages)
        .set({ metadata: sql`coalesce(${messages.metadata}, '{}'::jsonb) || ${json}::jsonb` })
        .where(eq(messages.id, messageId)),
    );
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
  openTurn(taskId: string, options: { flushMs?: number; streamMs?: number } = {}): TurnOutput {
    return new TurnOutput({
      store: this,
      taskId,
      emit: this.deps.emitChunk,
      clock: this.deps.clock,
      log: this.deps.outputs.open(taskId),
      limits: { ...this.deps.limits, ...options },
    });
  }

  private async writePiece(at: ContentCursor, piece: string): Promise<void> {
    const expected = at.bytes + utf8Bytes(piece);
    if (at.position > 0 && at.bytes === 0) {
      await this.retrying(() =>
        this.deps.db
          .insert(messageSegments)
          .values({ messageId: at.messageId, position: at.position, content: piece })
          .onConflictDoNothing(),
      );
      return;
    }
    // Appends only when the segment still has the length this write started from, so a rerun is a no-op;
    // the length it reports back proves the text is there exactly once.
    const table = at.position === 0 ? sql`${messages}` : sql`${messageSegments}`;
    const where =
      at.position === 0 ? sql`id = ${at.messageId}` : sql`message_id = ${at.messageId} AND position = ${at.position}`;
    const [row] = await this.retrying(() =>
      queryRows<{ bytes: number | string }>(
        this.deps.db,
        sql`UPDATE ${table} SET content = CASE WHEN octet_length(content) = ${at.bytes} THEN content || ${piece} ELSE content END WHERE ${where} RETURNING octet_length(content) AS bytes`,
      ),
    );
    if (!row || Number(row.bytes) !== expected) {
      throw new Error(
        `message ${at.messageId} segment ${at.position} holds ${row ? row.bytes : "nothing"} bytes, expected ${expected}`,
      );
    }
  }

  /** The overflow segments of the task's messages, read a bounded batch at a time. */
  private async segmentsOf(taskId: string): Promise<Map<string, string[]>> {
    const byMessage = new Map<string, string[]>();
    let after = { sequence: 0, position: 0 };
    for (;;) {
      const batch = await this.reading(() =>
        this.deps.db
          .select({
            messageId: messageSegments.messageId,
            sequence: messages.sequence,
            position: messageSegments.position,
            content: messageSegments.content,
          })
          .from(messageSegments)
          .innerJoin(messages, eq(messages.id, messageSegments.messageId))
          .where(
            and(
              eq(messages.taskId, taskId),
              sql`(${messages.sequence}, ${messageSegments.position}) > (${after.sequence}, ${after.position})`,
            ),
          )
          .orderBy(asc(messages.sequence), asc(messageSegments.position))
          .limit(SEGMENTS_PER_READ),
      );
      for (const segment of batch) {
        const parts = byMessage.get(segment.messageId) ?? [];
        parts.push(segment.content);
        byMessage.set(segment.messageId, parts);
      }
      if (batch.length < SEGMENTS_PER_READ) return byMessage;
      const last = batch.at(-1)!;
      after = { sequence: last.sequence, position: last.position };
    }
  }

  /** Writes survive a dropped database connection (see db-retry.ts); a lost message is lost work. */
  private retrying<T>(fn: () => Promise<T>): Promise<T> {
    return retryTransient(fn, { deadlineMs: this.deps.retryDeadlineMs ?? DB_RETRY_DEADLINE_MS });
  }

  private reading<T>(fn: () => Promise<T>): Promise<T> {
    return retryRead(fn);
  }
}
