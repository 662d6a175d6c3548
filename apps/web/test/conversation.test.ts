import type { MessageDto, StreamChunk } from "@repo/types";
import { describe, expect, it } from "vitest";
import { applyChunk, buildConversation, type ChatItem, messageToItem, reconcileStreamed } from "../src/conversation";

function message(
  id: string,
  sequence: number,
  role: MessageDto["role"],
  content: string,
  metadata?: object,
): MessageDto {
  return {
    id,
    sequence,
    role,
    content,
    createdAt: "2030-01-01T00:00:00.000Z",
    ...(metadata ? { metadata: metadata as Record<string, unknown> } : {}),
  };
}

function fold(chunks: StreamChunk[]): ChatItem[] {
  return chunks.reduce<ChatItem[]>(applyChunk, []);
}

describe("streamed agent output", () => {
  it("appends text deltas to the message in progress", () => {
    const items = fold([
      { type: "message-start", messageId: "m1", role: "assistant" },
      { type: "text", messageId: "m1", text: "Hel" },
      { type: "text", messageId: "m1", text: "lo **world**" },
    ]);
    expect(items).toEqual([
      {
        id: "m1",
        role: "assistant",
        streaming: true,
        complete: true,
        parts: [{ kind: "text", text: "Hello **world**" }],
      },
    ]);
  });

  it("keeps stdout and stderr apart and in order", () => {
    const items = fold([
      { type: "stdout", messageId: "m1", text: "a\n" },
      { type: "stdout", messageId: "m1", text: "b\n" },
      { type: "stderr", messageId: "m1", text: "oops\n" },
      { type: "message-end", messageId: "m1" },
    ]);
    expect(items[0]?.parts).toEqual([
      { kind: "output", stream: "stdout", text: "a\nb\n" },
      { kind: "output", stream: "stderr", text: "oops\n" },
    ]);
    expect(items[0]?.streaming).toBe(false);
  });

  it("completes a tool call with its result, even when the result comes in another message", () => {
    const items = fold([
      { type: "tool-call", messageId: "m1", toolCallId: "c1", toolName: "read_file", input: { path: "a.txt" } },
      { type: "tool-result", messageId: "m2", toolCallId: "c1", toolName: "read_file", output: "content" },
    ]);
    expect(items).toHaveLength(1);
    expect(items[0]?.parts[0]).toEqual({
      kind: "tool",
      toolCallId: "c1",
      toolName: "read_file",
      input: { path: "a.txt" },
      output: "content",
      done: true,
    });
  });

  it("ends every streaming item when the turn ends", () => {
    const items = fold([
      { type: "text", messageId: "m1", text: "x" },
      { type: "turn-end", status: "COMPLETED" },
    ]);
    expect(items.every((item) => !item.streaming)).toBe(true);
  });
});

describe("persisted messages", () => {
  it("turns tool metadata into a tool part and command output into an output part", () => {
    const meta = { kind: "tool-call", toolName: "list", toolCallId: "c9", input: { path: "." } };
    const tool = messageToItem(message("t", 2, "tool", '["a"]', { ...meta, output: ["a"], isError: false }));
    expect(tool.parts).toEqual([
      {
        kind: "tool",
        toolCallId: "c9",
        toolName: "list",
        input: { path: "." },
        output: ["a"],
        isError: false,
        done: true,
      },
    ]);
    const unanswered = messageToItem(message("u", 3, "tool", "", meta));
    expect(unanswered.parts[0]).toMatchObject({ kind: "tool", done: false });
    const out = messageToItem(message("o", 4, "tool", "hello\n", { kind: "command-output" }));
    expect(out.parts).toEqual([{ kind: "output", stream: "stdout", text: "hello\n" }]);
  });

  it("shows the streamed copy of a message seen from its start, else the persisted one", () => {
    const persisted = [message("a", 1, "assistant", "Hel"), message("b", 2, "assistant", "partial")];
    const streamed = fold([
      { type: "message-start", messageId: "a", role: "assistant" },
      { type: "text", messageId: "a", text: "Hello" },
      { type: "text", messageId: "b", text: " tail" },
    ]);
    const texts = buildConversation(persisted, streamed).map((item) => item.parts[0]);
    expect(texts).toEqual([
      { kind: "text", text: "Hello" },
      { kind: "text", text: "partial" },
    ]);
  });

  it("lists persisted messages by sequence, then streamed ones the server has not returned yet", () => {
    const persisted = [message("b", 2, "assistant", "two"), message("a", 1, "user", "one")];
    const streamed = fold([
      { type: "text", messageId: "b", text: "two (streamed copy)" },
      { type: "text", messageId: "c", text: "three" },
    ]);
    expect(buildConversation(persisted, streamed).map((item) => item.id)).toEqual(["a", "b", "c"]);
  });

  it("drops ended streamed copies the server returned, and all of them once the turn is over", () => {
    const streamed = fold([
      { type: "text", messageId: "b", text: "x" },
      { type: "message-end", messageId: "b" },
      { type: "text", messageId: "c", text: "y" },
      { type: "text", messageId: "d", text: "z" },
    ]);
    const persisted = [message("b", 2, "assistant", "x"), message("c", 3, "assistant", "")];
    expect(reconcileStreamed(streamed, persisted, false).map((i) => i.id)).toEqual(["c", "d"]);
    expect(reconcileStreamed(streamed, persisted, true)).toEqual([]);
  });
});
