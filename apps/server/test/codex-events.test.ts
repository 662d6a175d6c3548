/**
 * Reading Codex's `exec --json` events (codex-events.ts), fed with lines of
 * the shape the installed CLI prints (recorded from real runs, trimmed); the
 * real CLI is tested in agent-codex.test.ts.
 */
import { describe, expect, it } from "vitest";
import { callRecorder, cleanExit } from "../../../test/support/agent-cli-fixture";
import { CodexEvents } from "../src/agent/codex-events";

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
    const { output, calls } = callRecorder();
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
    expect(events.finish(cleanExit)).toEqual({
      status: "COMPLETED",
      session: { id: "t-1", usageTotals: { inputTokens: 50, outputTokens: 5 } },
      usage: { inputTokens: 50, outputTokens: 5, costUsd: null },
    });
  });

  it("marks a command that exits non-zero as an error result", () => {
    const { output, calls } = callRecorder();
    const events = new CodexEvents(output, { resume: null });
    events.event({ type: "item.completed", item: command("failed", 2, "nope\n") });
    expect(calls.at(-1)).toEqual([
      "toolResult",
      { toolCallId: "item_1", toolName: "command_execution", output: "nope\n", isError: true },
    ]);
  });

  it("names MCP tool calls by server and tool and leaves out reasoning, to-dos and warnings", () => {
    const { output, calls } = callRecorder();
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
    const events = new CodexEvents(callRecorder().output, {
      resume: { id: "t-1", usageTotals: { inputTokens: 1000, outputTokens: 100 } },
    });
    events.event(thread);
    events.event(completed(1300, 130));
    expect(events.finish(cleanExit)).toMatchObject({
      usage: { inputTokens: 300, outputTokens: 30, costUsd: null },
      session: { id: "t-1", usageTotals: { inputTokens: 1300, outputTokens: 130 } },
    });
  });

  it("counts the whole totals when the session started afresh", () => {
    const lower = new CodexEvents(callRecorder().output, {
      resume: { id: "t-1", usageTotals: { inputTokens: 1000, outputTokens: 100 } },
    });
    lower.event(thread);
    lower.event(completed(40, 4));
    expect(lower.finish(cleanExit)).toMatchObject({ usage: { inputTokens: 40, outputTokens: 4 } });

    const other = new CodexEvents(callRecorder().output, {
      resume: { id: "t-0", usageTotals: { inputTokens: 10, outputTokens: 1 } },
    });
    other.event(thread);
    other.event(completed(40, 4));
    expect(other.finish(cleanExit)).toMatchObject({ usage: { inputTokens: 40, outputTokens: 4 } });
  });

  it("completes despite errors it recovered from", () => {
    const events = new CodexEvents(callRecorder().output, { resume: null });
    events.event(thread);
    events.event({ type: "error", message: "Reconnecting... 1/5 (stream disconnected before completion)" });
    events.event(completed(1, 1));
    expect(events.fatalError).toBeNull();
    expect(events.finish(cleanExit).status).toBe("COMPLETED");
  });

  it("fails with the reason of turn.failed", () => {
    const events = new CodexEvents(callRecorder().output, { resume: null });
    events.event(thread);
    events.event({ type: "error", message: "Missing environment variable: `OPENAI_API_KEY`." });
    events.event({ type: "turn.failed", error: { message: "Missing environment variable: `OPENAI_API_KEY`." } });
    expect(events.finish({ exitCode: 1, signal: null, stderr: "" })).toMatchObject({
      status: "FAILED",
      error: "Codex failed: Missing environment variable: `OPENAI_API_KEY`.",
    });
  });

  it("declares a refused key fatal on the first reconnect that reports it", () => {
    const events = new CodexEvents(callRecorder().output, { resume: null });
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
    const withError = new CodexEvents(callRecorder().output, { resume: null });
    withError.event({ type: "error", message: "stream disconnected" });
    expect(withError.finish({ exitCode: 1, signal: null, stderr: "" })).toMatchObject({
      status: "FAILED",
      error: "Codex failed: stream disconnected",
    });
    const silent = new CodexEvents(callRecorder().output, { resume: null });
    const stderr = "Error: thread/resume: thread/resume failed: no rollout found for thread id x (code -32600)\n";
    expect(silent.finish({ exitCode: 1, signal: null, stderr })).toEqual({
      status: "FAILED",
      error: `Codex exited with code 1: ${stderr.trim()}`,
    });
  });

  it("says so when the session it was to resume was not found", () => {
    const { output, calls } = callRecorder();
    const events = new CodexEvents(output, { resume: { id: "old" } });
    events.event(thread);
    expect(calls).toEqual([
      ["text", "[The agent's earlier session was not found, so this turn starts a new conversation.]"],
    ]);
  });
});
