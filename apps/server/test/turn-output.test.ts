/**
 * The output sink of a turn and the message store behind it, on a real
 * database (PGlite and Postgres): output is capped per message and the rest
 * counted, content grows by appends in bounded segments and reads back
 * whole, NUL and lone surrogates are stored as U+FFFD, a retried append is
 * not doubled, small deltas leave in few stream chunks, and the task's log
 * file keeps what the message leaves out.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { messageSegments, messages, tasks } from "@repo/db";
import type { StreamChunk } from "@repo/types";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { tempDir } from "../../../test/support/git";
import { createLogger } from "../src/logger";
import { MessageLog } from "../src/services/message-log";
import { OutputLogs } from "../src/services/output-log";
import { ManualClock } from "../src/utils/clock";

const targets = await databaseTargets();
const KIB = 1024;

describe.each(targets)("turn output and message store on $name", (target) => {
  let database: TestDatabase;
  let logDir: string;
  const clock = new ManualClock();

  beforeAll(async () => {
    database = await target.open();
    logDir = join(tempDir("umbra-output-"), "logs");
  });
  afterAll(() => database.close());

  async function newTask(): Promise<string> {
    const id = randomUUID();
    const now = clock.now();
    await database.db.insert(tasks).values({
      id,
      title: "t",
      mode: "local",
      repoUrl: "/r",
      status: "RUNNING",
      initStatus: "ACTIVE",
      createdAt: now,
      updatedAt: now,
    });
    return id;
  }

  function messageLog(chunks: StreamChunk[] = [], limits: { maxMessageBytes?: number; logMaxBytes?: number } = {}) {
    return new MessageLog({
      db: database.db,
      clock,
      emitChunk: (_taskId, chunk) => chunks.push(chunk),
      outputs: new OutputLogs(logDir, limits.logMaxBytes ?? 1024 * KIB, clock, createLogger("silent")),
      limits: { maxMessageBytes: limits.maxMessageBytes },
    });
  }

  async function segmentSizes(messageId: string): Promise<number[]> {
    const [head] = await database.db
      .select({ bytes: sql<number>`octet_length(${messages.content})` })
      .from(messages)
      .where(eq(messages.id, messageId));
    const rest = await database.db
      .select({ bytes: sql<number>`octet_length(${messageSegments.content})` })
      .from(messageSegments)
      .where(eq(messageSegments.messageId, messageId))
      .orderBy(messageSegments.position);
    return [head!.bytes, ...rest.map((r) => r.bytes)].map(Number);
  }

  it("stores a long multi-byte output in segments of at most 64 KiB that read back exactly", async () => {
    const taskId = await newTask();
    const log = messageLog();
    const output = log.openTurn(taskId);
    // 3-byte and 4-byte characters, so segment boundaries fall inside characters unless the split is careful.
    const piece = "€😀abc".repeat(1000);
    let expected = "";
    for (let i = 0; i < 300; i++) {
      output.commandOutput("stdout", piece);
      expected += piece;
    }
    await output.close();

    const [message] = (await log.list(taskId)).filter((m) => m.role === "tool");
    expect(message!.content).toBe(expected);
    const sizes = await segmentSizes(message!.id);
    expect(sizes.length).toBeGreaterThan(40);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(64 * KIB);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(Buffer.byteLength(expected));
  });

  it("caps a message, ends it with the omitted byte count, and keeps the full output in the task's log", async () => {
    const taskId = await newTask();
    const chunks: StreamChunk[] = [];
    const log = messageLog(chunks, { maxMessageBytes: 100 * KIB, logMaxBytes: 10 * 1024 * KIB });
    const output = log.openTurn(taskId);
    const line = `${"x".repeat(99)}\n`;
    for (let i = 0; i < 5000; i++) output.commandOutput("stdout", line); // 500,000 bytes
    await output.close();

    const [message] = (await log.list(taskId)).filter((m) => m.role === "tool");
    const note = `\n… ${500_000 - 100 * KIB} bytes omitted; the task's log has the full output (GET /api/tasks/${taskId}/log)`;
    expect(message!.content).toBe(line.repeat(5000).slice(0, 100 * KIB) + note);
    expect(message!.metadata).toMatchObject({ kind: "command-output", omittedBytes: 500_000 - 100 * KIB });

    // The stream carried what the message holds, the note last, then message-end.
    const streamed = chunks.filter((c) => c.type === "stdout").map((c) => ("text" in c ? c.text : ""));
    expect(streamed.join("")).toBe(message!.content);
    expect(chunks.at(-1)).toEqual({ type: "message-end", messageId: message!.id });

    const file = readFileSync(join(logDir, `${taskId}.log`), "utf8");
    expect(file).toContain(`command output (message ${message!.id})\n${line.repeat(5000)}`);
  });

  it("caps a tool result, in its content, its metadata and its stream chunk", async () => {
    const taskId = await newTask();
    const chunks: StreamChunk[] = [];
    const log = messageLog(chunks, { maxMessageBytes: KIB });
    const output = log.openTurn(taskId);
    output.toolCall({ toolCallId: "c1", toolName: "readFile", input: { path: "big.txt" } });
    output.toolResult({ toolCallId: "c1", toolName: "readFile", output: "z".repeat(5000) });
    await output.close();

    const capped = `${"z".repeat(KIB)}\n… ${5000 - KIB} bytes omitted; the task's log has the full output (GET /api/tasks/${taskId}/log)`;
    const [message] = await log.list(taskId);
    expect(message!.content).toBe(capped);
    expect(message!.metadata).toMatchObject({ output: capped, omittedBytes: 5000 - KIB });
    expect(chunks.find((c) => c.type === "tool-result")).toMatchObject({ output: capped });
    expect(readFileSync(join(logDir, `${taskId}.log`), "utf8")).toContain("z".repeat(5000));
  });

  it("caps the log file at its own limit and says how much it left out", async () => {
    const taskId = await newTask();
    const log = messageLog([], { maxMessageBytes: 10 * KIB, logMaxBytes: 50 * KIB });
    const output = log.openTurn(taskId);
    for (let i = 0; i < 100; i++) output.commandOutput("stdout", "y".repeat(KIB));
    await output.close();

    const file = readFileSync(join(logDir, `${taskId}.log`));
    const notice = /\n… (\d+) bytes omitted: this log reached its limit of 51200 bytes\n$/.exec(file.toString("utf8"));
    expect(notice).not.toBeNull();
    expect(file.length - Buffer.byteLength(notice![0])).toBe(50 * KIB);
    const heading = file.toString("utf8").split("\n").slice(0, 2).join("\n").length + 1;
    expect(Number(notice![1])).toBe(100 * KIB - (50 * KIB - heading));
  });

  it("stores NUL and lone surrogates as U+FFFD and keeps everything after them", async () => {
    const taskId = await newTask();
    const chunks: StreamChunk[] = [];
    const log = messageLog(chunks);
    const output = log.openTurn(taskId);
    output.text("answer \u0000 with NUL and a lone \ud800 surrogate; ");
    output.text("and the rest\u001b[0m");
    output.toolCall({ toolCallId: "c1", toolName: "runCommand", input: { command: "printf 'a\\0b'", raw: "\u0000" } });
    output.toolResult({ toolCallId: "c1", toolName: "runCommand", output: "a\u0000b and \udc00" });
    output.commandOutput("stdout", "before\u0000after\n");
    output.commandOutput("stderr", "err \u0007 bell\n");
    await output.close();

    const stored = (await log.list(taskId)).map((m) => [m.role, m.content, m.metadata]);
    expect(stored).toEqual([
      ["assistant", "answer \uFFFD with NUL and a lone \uFFFD surrogate; and the rest\u001b[0m", { kind: "text" }],
      [
        "tool",
        "a\uFFFDb and \uFFFD",
        {
          kind: "tool-call",
          toolCallId: "c1",
          toolName: "runCommand",
          input: { command: "printf 'a\\0b'", raw: "\uFFFD" },
          output: "a\uFFFDb and \uFFFD",
          isError: false,
        },
      ],
      ["tool", "before\uFFFDafter\nerr \u0007 bell\n", { kind: "command-output" }],
    ]);
    const types = chunks.map((c) => c.type);
    expect(types).toEqual([
      "message-start",
      "text",
      "message-end",
      "message-start",
      "tool-call",
      "tool-result",
      "message-end",
      "message-start",
      "stdout",
      "stderr",
      "message-end",
    ]);
    // The log keeps the output as it came, NUL included.
    expect(readFileSync(join(logDir, `${taskId}.log`), "utf8")).toContain("before\u0000after\n");
  });

  it("sends many small deltas as a few stream chunks", async () => {
    const taskId = await newTask();
    const chunks: StreamChunk[] = [];
    const output = messageLog(chunks).openTurn(taskId);
    for (let i = 0; i < 10_000; i++) output.text("0123456789"); // 100,000 bytes in 10-byte deltas
    await output.close();

    const texts = chunks.filter((c) => c.type === "text");
    // The first full 64 KiB queued one batch; by the time it left, it took everything (the stream timer never fired).
    expect(texts.length).toBe(1);
    expect(texts.map((c) => ("text" in c ? c.text : "")).join("")).toBe("0123456789".repeat(10_000));
  });

  it("an append run twice (a retry after a lost connection) stores its text once", async () => {
    const taskId = await newTask();
    const log = messageLog();
    const row = await log.append(taskId, "tool", "", null);
    const cursor = { messageId: row.id, position: 0, bytes: 0 };
    const after = await log.appendContent(cursor, "first ");
    expect(await log.appendContent(cursor, "first ")).toEqual(after);
    const big = "z".repeat(100 * KIB);
    const end = await log.appendContent(after, big);
    expect(await log.appendContent(after, big)).toEqual(end);
    const [message] = await log.list(taskId);
    expect(message!.content).toBe(`first ${big}`);
  });

  it("refuses an append whose segment does not hold what the writer expects", async () => {
    const taskId = await newTask();
    const log = messageLog();
    const row = await log.append(taskId, "tool", "abc", null);
    await expect(log.appendContent({ messageId: row.id, position: 0, bytes: 1 }, "x")).rejects.toThrow(
      /holds 3 bytes, expected 2/,
    );
    expect((await log.list(taskId))[0]!.content).toBe("abc");
  });
});
