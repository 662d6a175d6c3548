/**
 * The conversation as the task page shows it: persisted messages (GET
 * /messages) merged with the messages streaming in over `stream-chunk`.
 *
 * The server creates a message row when the message starts (its id is the
 * chunks' messageId) and writes its content at intervals and when it ends.
 * So while a message streams, the copy built from its chunks is the freshest
 * — if the page saw the message from its start. Once a message has ended,
 * the persisted copy is final and replaces the streamed one; after the turn,
 * the refetched messages replace all of them.
 */
import type { MessageDto, MessageRole, StreamChunk } from "@repo/types";

export type ChatPart =
  | { kind: "text"; text: string }
  | { kind: "output"; stream: "stdout" | "stderr"; text: string }
  | {
      kind: "tool";
      toolCallId: string;
      toolName: string;
      input: unknown;
      output?: unknown;
      isError?: boolean;
      done: boolean;
    };

export interface ChatItem {
  id: string;
  role: MessageRole;
  parts: ChatPart[];
  /** Still streaming (no message-end yet). */
  streaming: boolean;
  /** Built from the message's first chunk on (message-start was seen). */
  complete?: boolean;
  createdAt?: string;
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/** A persisted message as a ChatItem; tool calls and command output become their own parts. */
export function messageToItem(message: MessageDto): ChatItem {
  const meta = message.metadata ?? {};
  const toolName = str(meta.toolName);
  const stream =
    meta.stream === "stdout" || meta.stream === "stderr"
      ? meta.stream
      : meta.kind === "command-output"
        ? "stdout"
        : undefined;
  let parts: ChatPart[];
  if (toolName) {
    const hasOutput = "output" in meta;
    parts = [
      {
        kind: "tool",
        toolCallId: str(meta.toolCallId) ?? message.id,
        toolName,
        input: meta.input,
        ...(hasOutput ? { output: meta.output } : {}),
        ...(typeof meta.isError === "boolean" ? { isError: meta.isError } : {}),
        done: hasOutput,
      },
    ];
    if (message.role !== "tool" && message.content.trim() && message.content !== meta.output) {
      parts.unshift({ kind: "text", text: message.content });
    }
  } else if (stream) {
    parts = [{ kind: "output", stream, text: message.content }];
  } else {
    parts = [{ kind: "text", text: message.content }];
  }
  return { id: message.id, role: message.role, parts, streaming: false, createdAt: message.createdAt };
}

function updateItem(
  items: readonly ChatItem[],
  id: string,
  role: MessageRole,
  update: (item: ChatItem) => ChatItem,
): ChatItem[] {
  const index = items.findIndex((item) => item.id === id);
  if (index < 0) return [...items, update({ id, role, parts: [], streaming: true })];
  const next = [...items];
  next[index] = update(items[index]!);
  return next;
}

function appendText(item: ChatItem, kind: "text" | "stdout" | "stderr", text: string): ChatItem {
  const last = item.parts.at(-1);
  const parts = [...item.parts];
  if (kind === "text") {
    if (last?.kind === "text") parts[parts.length - 1] = { ...last, text: last.text + text };
    else parts.push({ kind: "text", text });
  } else if (last?.kind === "output" && last.stream === kind) {
    parts[parts.length - 1] = { ...last, text: last.text + text };
  } else {
    parts.push({ kind: "output", stream: kind, text });
  }
  return { ...item, parts };
}

/** Folds one stream chunk into the list of streamed items. */
export function applyChunk(items: readonly ChatItem[], chunk: StreamChunk): ChatItem[] {
  switch (chunk.type) {
    case "message-start":
      return updateItem(items, chunk.messageId, chunk.role, (item) => ({
        ...item,
        role: chunk.role,
        complete: item.parts.length === 0,
      }));
    case "text":
    case "stdout":
    case "stderr":
      return updateItem(items, chunk.messageId, "assistant", (item) => appendText(item, chunk.type, chunk.text));
    case "tool-call":
      return updateItem(items, chunk.messageId, "assistant", (item) => ({
        ...item,
        parts: [
          ...item.parts,
          { kind: "tool", toolCallId: chunk.toolCallId, toolName: chunk.toolName, input: chunk.input, done: false },
        ],
      }));
    case "tool-result": {
      const result = {
        output: chunk.output,
        done: true,
        ...(chunk.isError !== undefined ? { isError: chunk.isError } : {}),
      };
      const owner = items.findIndex((item) =>
        item.parts.some((part) => part.kind === "tool" && part.toolCallId === chunk.toolCallId),
      );
      if (owner >= 0) {
        const next = [...items];
        const item = items[owner]!;
        next[owner] = {
          ...item,
          parts: item.parts.map((part) =>
            part.kind === "tool" && part.toolCallId === chunk.toolCallId ? { ...part, ...result } : part,
          ),
        };
        return next;
      }
      return updateItem(items, chunk.messageId, "tool", (item) => ({
        ...item,
        parts: [
          ...item.parts,
          { kind: "tool", toolCallId: chunk.toolCallId, toolName: chunk.toolName, input: undefined, ...result },
        ],
      }));
    }
    case "message-end":
      return items.map((item) => (item.id === chunk.messageId ? { ...item, streaming: false } : item));
    case "turn-end":
      return items.map((item) => (item.streaming ? { ...item, streaming: false } : item));
  }
}

/**
 * What remains streamed after a refetch: ended messages the server returned
 * are final there and dropped here; when the whole turn is over, all are.
 */
export function reconcileStreamed(
  streamed: readonly ChatItem[],
  persisted: readonly MessageDto[],
  turnOver: boolean,
): ChatItem[] {
  if (turnOver) return [];
  const ids = new Set(persisted.map((m) => m.id));
  return streamed.filter((item) => item.streaming || !ids.has(item.id));
}

/**
 * Persisted messages in sequence order — each replaced by its streamed copy
 * when the page saw that message from its start (until a refetch returns the
 * final copy) — then streamed messages the server has not returned yet.
 */
export function buildConversation(persisted: readonly MessageDto[], streamed: readonly ChatItem[]): ChatItem[] {
  const byId = new Map(streamed.map((item) => [item.id, item]));
  const ordered = [...persisted].sort((a, b) => a.sequence - b.sequence);
  const ids = new Set(ordered.map((m) => m.id));
  const merged = ordered.map((message) => {
    const live = byId.get(message.id);
    return live?.complete ? live : messageToItem(message);
  });
  const pending = streamed.filter((item) => !ids.has(item.id) && (item.parts.length > 0 || item.streaming));
  return [...merged, ...pending];
}
