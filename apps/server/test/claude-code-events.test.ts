/**
 * Reading Claude Code's stream-json events (claude-code-events.ts), fed with
 * lines of the shape the installed CLI prints (recorded from real runs,
 * trimmed); the real CLI is tested in agent-claude-code.test.ts.
 */
import { describe, expect, it } from "vitest";
import { callRecorder, cleanExit } from "../../../test/support/agent-cli-fixture";
import { ClaudeCodeEvents } from "../src/agent/claude-code-events";

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
    const { output, calls } = callRecorder();
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
    expect(events.finish(cleanExit)).toEqual({
      status: "COMPLETED",
      session: { id: "s-1" },
      usage: { inputTokens: 1110, outputTokens: 42, costUsd: 0.0123 },
    });
  });

  it("shows the text of a message that was not streamed, separated from text before it", () => {
    const { output, calls } = callRecorder();
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
    const { output, calls } = callRecorder();
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
    const { output, calls } = callRecorder();
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
    const { output, calls } = callRecorder();
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
    const events = new ClaudeCodeEvents(callRecorder().output, { resumeSessionId: null });
    events.event({ type: "result", subtype: "error_during_execution", is_error: true, errors: ["boom", "bang"] });
    expect(events.finish(cleanExit)).toMatchObject({ status: "FAILED", error: "Claude Code failed: boom; bang" });
  });

  it("declares a refused key fatal on the first retry notice", () => {
    const events = new ClaudeCodeEvents(callRecorder().output, { resumeSessionId: null });
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
    const { output, calls } = callRecorder();
    const events = new ClaudeCodeEvents(output, { resumeSessionId: "old" });
    events.event({ ...init, session_id: "new" });
    expect(calls).toEqual([
      ["text", "[The agent's earlier session was not found, so this turn starts a new conversation.]"],
    ]);
  });

  it("explains an exit without a result from the exit code and standard error", () => {
    const events = new ClaudeCodeEvents(callRecorder().output, { resumeSessionId: null });
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
    const { output, calls } = callRecorder();
    const events = new ClaudeCodeEvents(output, { resumeSessionId: null });
    for (const event of [null, 42, "x", { type: "assistant", message: "oops" }, { type: "rate_limit_event" }, {}]) {
      events.event(event);
    }
    expect(calls).toEqual([]);
  });
});
