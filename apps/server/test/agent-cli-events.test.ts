/**
 * Reading the agent CLIs' JSON event streams: the line splitter, Claude
 * Code's stream-json events and Codex's `exec --json` events, fed with lines
 * of the shape the installed CLIs print (recorded from real runs, trimmed).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ClaudeCodeEvents } from "../src/agent/claude-code-events";
import { CodexEvents } from "../src/agent/codex-events";
import { LineSplitter } from "../src/agent/ndjson";
import type { AgentOutput } from "../src/agent/types";

type Recorded = Array<[string, ...unknown[]]>;

function recorder(): { output: AgentOutput; calls: Recorded } {
  const calls: Recorded = [];
  return {
    calls,
    output: {
      text: (text) => calls.push(["text", text]),
      commandOutput: (stream, text) => calls.push(["commandOutput", stream, text]),
      toolCall: (call) => calls.push(["toolCall", call]),
      toolResult: (result) => calls.push(["toolResult", result]),
    },
  };
}

const exited = { exitCode: 0, signal: null, stderr: "" };

describe("the line splitter", () => {
  it("joins a line split across chunks and splits chunks holding several lines", () => {
    const lines = new LineSplitter();
    expect(lines.push('{"a":')).toEqual([]);
    expect(lines.push('1}\n{"b":2}\n{"c"')).toEqual(['{"a":1}', '{"b":2}']);
    expect(lines.push(":3}\r\n")).toEqual(['{"c":3}']);
    expect(lines.end()).toEqual([]);
  });

  it("returns a last line without a terminator at the end", () => {
    const lines = new LineSplitter();
    expect(lines.push("one\ntwo")).toEqual(["one"]);
    expect(lines.end()).toEqual(["two"]);
  });

  it("cuts a line longer than its limit instead of buffering it", () => {
    const lines = new LineSplitter(4);
    expect(lines.push("abcdefghij")).toEqual(["abcd", "efgh"]);
    expect(lines.push("\n")).toEqual(["ij"]);
  });

  it("gives the same lines however the text is cut into chunks (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: fc.constantFrom("a", "b", "\n", "{", "é") })), (chunks) => {
        const lines = new LineSplitter();
        const got = [...chunks.flatMap((chunk) => lines.push(chunk)), ...lines.end()];
        const whole = chunks.join("");
        const expected = whole.split("\n");
        if (expected.at(-1) === "") expected.pop();
        expect(got).toEqual(expected);
      }),
    );
  });
});

describe("Claude Code events", () => {
  const init = { type: "system", subtype: "init", session_id: "s-1", model: "claude-x" };
  const result = {
    type: "result",
    subtype: "success",
    is_error: false,
    result: "done",
    session_id: "s-1",
    total_cost_usd: 0.0123,
    usage: { input_tokens: 10, cache_creation_input_tokens: 100, cache_read_input_tokens: 1000, output_tokens: 42 },
  };
  const streamEvent = (event: object, parent: string | null = null) => ({
    type: "stream_event",
    event,
    parent_tool_use_id: parent,
    session_id: "s-1",
  });

  it("streams text deltas once, without repeating them from the whole message", () => {
    const { output, calls } = recorder();
    const events = new ClaudeCodeEvents(output, { resumeSessionId: null });
    for (const event of [
      init,
      streamEvent({ type: "message_start", message: { id: "msg_1" } }),
      streamEvent({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }),
      streamEvent({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hel" } }),
      streamEvent({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "lo" } }),
      {
        type: "assistant",
        message: { id: "msg_1", content: [{ type: "text", text: "Hello" }] },
        parent_tool_use_id: null,
      },
      result,
    ]) {
      events.event(event);
    }
    expect(calls).toEqual([
      ["text", "Hel"],
      ["text", "lo"],
    ]);
    expect(events.finish(exited)).toEqual({
      status: "COMPLETED",
      session: { id: "s-1" },
      usage: { inputTokens: 1110, outputTokens: 42, costUsd: 0.0123 },
    });
  });

  it("shows the text of a message that was not streamed, separated from text before it", () => {
    const { output, calls } = recorder();
    const events = new ClaudeCodeEvents(output, { resumeSessionId: null });
    events.event({ type: "assistant", message: { id: "m1", content: [{ type: "text", text: "First." }] } });
    events.event({ type: "assistant", message: { id: "m2", content: [{ type: "text", text: "Second." }] } });
    expect(calls).toEqual([
      ["text", "First."],
      ["text", "\n\n"],
      ["text", "Second."],
    ]);
  });

  it("reports tool calls with their input and results with their text, error flag and tool name", () => {
    const { output, calls } = recorder();
    const events = new ClaudeCodeEvents(output, { resumeSessionId: null });
    events.event({
      type: "assistant",
      message: {
        id: "m1",
        content: [
          { type: "thinking", thinking: "hmm" },
          { type: "tool_use", id: "toolu_1", name: "Bash", input: { command: "ls" } },
        ],
      },
    });
    events.event({
      type: "user",
      message: {
        role: "user",
        content: [
          {
            type: "tool_result",
            tool_use_id: "toolu_1",
            content: [{ type: "text", text: "a.txt" }, { type: "image" }],
            is_error: true,
          },
        ],
      },
    });
    expect(calls).toEqual([
      ["toolCall", { toolCallId: "toolu_1", toolName: "Bash", input: { command: "ls" } }],
      ["toolResult", { toolCallId: "toolu_1", toolName: "Bash", output: "a.txt\n[image]", isError: true }],
    ]);
  });

  it("leaves out what subagents do", () => {
    const { output, calls } = recorder();
    const events = new ClaudeCodeEvents(output, { resumeSessionId: null });
    events.event(streamEvent({ type: "content_block_delta", delta: { type: "text_delta", text: "inner" } }, "toolu_9"));
    events.event({
      type: "assistant",
      parent_tool_use_id: "toolu_9",
      message: { content: [{ type: "tool_use", id: "toolu_10", name: "Read", input: {} }] },
    });
    events.event({
      type: "user",
      parent_tool_use_id: "toolu_9",
      message: { content: [{ type: "tool_result", tool_use_id: "toolu_10", content: "x" }] },
    });
    expect(calls).toEqual([]);
  });

  it("fails with Claude Code's own reason and does not show its error notice as text", () => {
    const { output, calls } = recorder();
    const events = new ClaudeCodeEvents(output, { resumeSessionId: null });
    events.event({
      type: "assistant",
      is_api_error_message: true,
      message: { id: "x", content: [{ type: "text", text: "Invalid API key · Fix external API key" }] },
    });
    events.event({
      ...result,
      is_error: true,
      result: "Invalid API key · Fix external API key",
      usage: { input_tokens: 0, output_tokens: 0 },
      total_cost_usd: 0,
    });
    expect(calls).toEqual([]);
    expect(events.finish({ exitCode: 1, signal: null, stderr: "" })).toMatchObject({
      status: "FAILED",
      error: "Claude Code failed: Invalid API key · Fix external API key",
    });
  });

  it("falls back to the result's errors when it has no text", () => {
    const events = new ClaudeCodeEvents(recorder().output, { resumeSessionId: null });
    events.event({ type: "result", subtype: "error_during_execution", is_error: true, errors: ["boom", "bang"] });
    expect(events.finish(exited)).toMatchObject({ status: "FAILED", error: "Claude Code failed: boom; bang" });
  });

  it("declares a refused key fatal on the first retry notice", () => {
    const events = new ClaudeCodeEvents(recorder().output, { resumeSessionId: null });
    events.event({ type: "system", subtype: "api_retry", attempt: 1, error_status: 529, error: "overloaded" });
    expect(events.fatalError).toBeNull();
    events.event({
      type: "system",
      subtype: "api_retry",
      attempt: 2,
      error_status: 401,
      error: "authentication_failed",
    });
    expect(events.fatalError).toBe(
      "the model provider refused the API key (HTTP 401 authentication_failed); check ANTHROPIC_API_KEY",
    );
  });

  it("says so when the session it was to resume was not found", () => {
    const { output, calls } = recorder();
    const events = new ClaudeCodeEvents(output, { resumeSessionId: "old" });
    events.event({ ...init, session_id: "new" });
    expect(calls).toEqual([
      ["text", "[The agent's earlier session was not found, so this turn starts a new conversation.]"],
    ]);
  });

  it("explains an exit without a result from the exit code and standard error", () => {
    const events = new ClaudeCodeEvents(recorder().output, { resumeSessionId: null });
    events.event(init);
    expect(events.finish({ exitCode: 1, signal: null, stderr: "warning\nError: something broke\n" })).toEqual({
      status: "FAILED",
      error: "Claude Code exited with code 1: warning / Error: something broke",
      session: { id: "s-1" },
    });
    expect(events.finish({ exitCode: 127, signal: null, stderr: "sh: 1: claude: not found\n" })).toMatchObject({
      error: "Claude Code could not be started (not found): sh: 1: claude: not found",
    });
  });

  it("ignores events it does not know or cannot read", () => {
    const { output, calls } = recorder();
    const events = new ClaudeCodeEvents(output, { resumeSessionId: null });
    for (const event of [null, 42, "x", { type: "assistant", message: "oops" }, { type: "rate_limit_event" }, {}]) {
      events.event(event);
    }
    expect(calls).toEqual([]);
  });
});

describe("Codex events", () => {
  const thread = { type: "thread.started", thread_id: "t-1" };
  const completed = (input: number, output: number) => ({
    type: "turn.completed",
    usage: { input_tokens: input, cached_input_tokens: 0, output_tokens: output, reasoning_output_tokens: 0 },
  });
  const command = (status: string, exit: number | null, out: string) => ({
    id: "item_1",
    type: "command_execution",
    command: "/bin/bash -lc 'ls'",
    aggregated_output: out,
    exit_code: exit,
    status,
  });

  it("reports commands and file changes as tool calls when they start and results when they complete", () => {
    const { output, calls } = recorder();
    const events = new CodexEvents(output, { resume: null });
    events.event(thread);
    events.event({ type: "item.started", item: command("in_progress", null, "") });
    events.event({ type: "item.completed", item: command("completed", 0, "a.txt\n") });
    const change = {
      id: "item_2",
      type: "file_change",
      changes: [{ path: "/w/a.txt", kind: "add" }],
      status: "completed",
    };
    events.event({ type: "item.completed", item: change });
    events.event({ type: "item.completed", item: { id: "item_3", type: "agent_message", text: "Done." } });
    events.event(completed(50, 5));
    expect(calls).toEqual([
      ["toolCall", { toolCallId: "item_1", toolName: "command_execution", input: { command: "/bin/bash -lc 'ls'" } }],
      ["toolResult", { toolCallId: "item_1", toolName: "command_execution", output: "a.txt\n", isError: false }],
      ["toolCall", { toolCallId: "item_2", toolName: "file_change", input: { changes: change.changes } }],
      ["toolResult", { toolCallId: "item_2", toolName: "file_change", output: "add /w/a.txt", isError: false }],
      ["text", "Done."],
    ]);
    expect(events.finish(exited)).toEqual({
      status: "COMPLETED",
      session: { id: "t-1", usageTotals: { inputTokens: 50, outputTokens: 5 } },
      usage: { inputTokens: 50, outputTokens: 5, costUsd: null },
    });
  });

  it("marks a command that exits non-zero as an error result", () => {
    const { output, calls } = recorder();
    const events = new CodexEvents(output, { resume: null });
    events.event({ type: "item.completed", item: command("failed", 2, "nope\n") });
    expect(calls.at(-1)).toEqual([
      "toolResult",
      { toolCallId: "item_1", toolName: "command_execution", output: "nope\n", isError: true },
    ]);
  });

  it("names MCP tool calls by server and tool and leaves out reasoning, to-dos and warnings", () => {
    const { output, calls } = recorder();
    const events = new CodexEvents(output, { resume: null });
    events.event({ type: "item.completed", item: { id: "r", type: "reasoning", text: "thinking" } });
    events.event({ type: "item.completed", item: { id: "w", type: "error", message: "model metadata not found" } });
    events.event({ type: "item.completed", item: { id: "td", type: "todo_list", items: [] } });
    events.event({
      type: "item.completed",
      item: {
        id: "m",
        type: "mcp_tool_call",
        server: "docs",
        tool: "search",
        arguments: { q: "x" },
        result: { ok: 1 },
        status: "completed",
      },
    });
    expect(calls).toEqual([
      ["toolCall", { toolCallId: "m", toolName: "mcp:docs/search", input: { q: "x" } }],
      ["toolResult", { toolCallId: "m", toolName: "mcp:docs/search", output: { ok: 1 }, isError: false }],
    ]);
  });

  it("counts only this turn's share of the session's running totals", () => {
    const events = new CodexEvents(recorder().output, {
      resume: { id: "t-1", usageTotals: { inputTokens: 1000, outputTokens: 100 } },
    });
    events.event(thread);
    events.event(completed(1300, 130));
    expect(events.finish(exited)).toMatchObject({
      usage: { inputTokens: 300, outputTokens: 30, costUsd: null },
      session: { id: "t-1", usageTotals: { inputTokens: 1300, outputTokens: 130 } },
    });
  });

  it("counts the whole totals when the session started afresh", () => {
    const lower = new CodexEvents(recorder().output, {
      resume: { id: "t-1", usageTotals: { inputTokens: 1000, outputTokens: 100 } },
    });
    lower.event(thread);
    lower.event(completed(40, 4));
    expect(lower.finish(exited)).toMatchObject({ usage: { inputTokens: 40, outputTokens: 4 } });

    const other = new CodexEvents(recorder().output, {
      resume: { id: "t-0", usageTotals: { inputTokens: 10, outputTokens: 1 } },
    });
    other.event(thread);
    other.event(completed(40, 4));
    expect(other.finish(exited)).toMatchObject({ usage: { inputTokens: 40, outputTokens: 4 } });
  });

  it("completes despite errors it recovered from", () => {
    const events = new CodexEvents(recorder().output, { resume: null });
    events.event(thread);
    events.event({ type: "error", message: "Reconnecting... 1/5 (stream disconnected before completion)" });
    events.event(completed(1, 1));
    expect(events.fatalError).toBeNull();
    expect(events.finish(exited).status).toBe("COMPLETED");
  });

  it("fails with the reason of turn.failed", () => {
    const events = new CodexEvents(recorder().output, { resume: null });
    events.event(thread);
    events.event({ type: "error", message: "Missing environment variable: `OPENAI_API_KEY`." });
    events.event({ type: "turn.failed", error: { message: "Missing environment variable: `OPENAI_API_KEY`." } });
    expect(events.finish({ exitCode: 1, signal: null, stderr: "" })).toMatchObject({
      status: "FAILED",
      error: "Codex failed: Missing environment variable: `OPENAI_API_KEY`.",
    });
  });

  it("declares a refused key fatal on the first reconnect that reports it", () => {
    const events = new CodexEvents(recorder().output, { resume: null });
    events.event({
      type: "error",
      message:
        "Reconnecting... 1/5 (unexpected status 401 Unauthorized: Incorrect API key provided: sk-x., url: http://h/v1/responses)",
    });
    expect(events.fatalError).toBe(
      "the model provider refused the API key (unexpected status 401 Unauthorized: Incorrect API key provided: sk-x., url: http://h/v1/responses); check OPENAI_API_KEY",
    );
  });

  it("explains an end without turn.completed by the last error, or else the exit and standard error", () => {
    const withError = new CodexEvents(recorder().output, { resume: null });
    withError.event({ type: "error", message: "stream disconnected" });
    expect(withError.finish({ exitCode: 1, signal: null, stderr: "" })).toMatchObject({
      status: "FAILED",
      error: "Codex failed: stream disconnected",
    });
    const silent = new CodexEvents(recorder().output, { resume: null });
    const stderr = "Error: thread/resume: thread/resume failed: no rollout found for thread id x (code -32600)\n";
    expect(silent.finish({ exitCode: 1, signal: null, stderr })).toEqual({
      status: "FAILED",
      error: `Codex exited with code 1: ${stderr.trim()}`,
    });
  });

  it("says so when the session it was to resume was not found", () => {
    const { output, calls } = recorder();
    const events = new CodexEvents(output, { resume: { id: "old" } });
    events.event(thread);
    expect(calls).toEqual([
      ["text", "[The agent's earlier session was not found, so this turn starts a new conversation.]"],
    ]);
  });
});
