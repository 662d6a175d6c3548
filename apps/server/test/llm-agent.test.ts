/**
 * The `llm` agent against the real local ToolExecutor on a fresh git
 * repository, running real commands, with the model as the only fake: a scripted MockLanguageModelV3, and for the
 * provider wiring a local OpenAI-compatible HTTP stub.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createLocalExecutor, type ToolExecutor } from "@repo/workspace";
import { APICallError } from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type OpenAiStub, startOpenAiStub } from "../../../test/support/openai-stub";
import { scriptedModel, textStep, toolCallStep, usage } from "../../../test/support/scripted-model";
import { LlmAgentRunner } from "../src/agent/llm-agent";
import { createLlmModel, LlmConfigError } from "../src/agent/llm-model";
import { createLlmTools, RUN_COMMAND_OUTPUT_LIMIT } from "../src/agent/llm-tools";
import type { AgentOutput, AgentTurn, ConversationMessage, SearchHit } from "../src/agent/types";

const run = promisify(execFile);

/** The real local executor on a fresh git repository, counting the commands still running. */
async function gitWorkspace(dir: string): Promise<{ executor: ToolExecutor; running: () => number }> {
  await mkdir(dir, { recursive: true });
  await run("git", ["init", "-q", "-b", "main", dir]);
  const local = createLocalExecutor(dir, { home: join(dir, "..", "home") });
  let running = 0;
  const executor: ToolExecutor = {
    readFile: (path) => local.readFile(path),
    writeFile: (path, content) => local.writeFile(path, content),
    editFile: (...args) => local.editFile(...args),
    listDir: (path) => local.listDir(path),
    grep: (...args) => local.grep(...args),
    commitAll: (message) => local.commitAll(message),
    runCommand: async (...args) => {
      running += 1;
      try {
        return await local.runCommand(...args);
      } finally {
        running -= 1;
      }
    },
  };
  return { executor, running: () => running };
}

// ---------------------------------------------------------------------------
// A scripted model and a recording turn.

type OutputEvent =
  | { type: "text"; text: string }
  | { type: "commandOutput"; stream: string; text: string }
  | { type: "toolCall"; toolCallId: string; toolName: string; input: unknown }
  | { type: "toolResult"; toolCallId: string; toolName: string; output: unknown; isError?: boolean };

function recordingOutput(events: OutputEvent[]): AgentOutput {
  return {
    text: (text) => events.push({ type: "text", text }),
    commandOutput: (stream, text) => {
      events.push({ type: "commandOutput", stream, text });
    },
    toolCall: (call) => events.push({ type: "toolCall", ...call }),
    toolResult: (result) => events.push({ type: "toolResult", ...result }),
  };
}

let root: string;
let workspace: string;
let executor: ToolExecutor;
let commandsRunning: () => number;
let events: OutputEvent[];
let stubs: OpenAiStub[];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "umbra-llm-agent-"));
  workspace = join(root, "workspace");
  ({ executor, running: commandsRunning } = await gitWorkspace(workspace));
  events = [];
  stubs = [];
});

afterEach(async () => {
  await Promise.all(stubs.map((stub) => stub.close()));
  // Every command the agent started must have ended with its turn.
  expect(commandsRunning()).toBe(0);
  await rm(root, { recursive: true, force: true });
});

function makeTurn(overrides: Partial<AgentTurn> = {}): AgentTurn {
  return {
    taskId: "task-1",
    message: "Create hello.txt and show it.",
    history: [],
    executor,
    searchCode: async () => [],
    signal: new AbortController().signal,
    output: recordingOutput(events),
    ...overrides,
  };
}

const summary = (e: OutputEvent) => (e.type === "text" || e.type === "commandOutput" ? `${e.type}:${e.text}` : e.type);

// ---------------------------------------------------------------------------

describe("LlmAgentRunner", () => {
  it("writes a file, runs a command on it and answers, reporting each event in order", async () => {
    const model = scriptedModel([
      toolCallStep("call-1", "write_file", { path: "hello.txt", content: "hi" }),
      toolCallStep("call-2", "run_command", { command: "cat hello.txt" }),
      textStep("Done."),
    ]);

    const result = await new LlmAgentRunner({ model }).run(makeTurn());

    expect(result).toEqual({ status: "COMPLETED", usage: { inputTokens: 30, outputTokens: 15, costUsd: null } });
    expect(await readFile(join(workspace, "hello.txt"), "utf8")).toBe("hi");
    // Committing is the turn service's job, not the agent's.
    expect((await run("git", ["status", "--porcelain"], { cwd: workspace })).stdout).toBe("?? hello.txt\n");
    expect(events.map(summary)).toEqual([
      "toolCall",
      "toolResult",
      "toolCall",
      "commandOutput:hi",
      "toolResult",
      "text:Done.",
    ]);
    expect(events[0]).toMatchObject({ toolCallId: "call-1", toolName: "write_file", input: { path: "hello.txt" } });
    expect(events[4]).toMatchObject({
      toolCallId: "call-2",
      toolName: "run_command",
      output: { exitCode: 0, output: "hi", truncated: false },
    });
    expect(events.some((e) => e.type === "toolResult" && e.isError)).toBe(false);
  });

  it("reports a tool refused by the workspace to the model as an error result and carries on", async () => {
    const model = scriptedModel([
      toolCallStep("call-1", "write_file", { path: "../x", content: "escape" }),
      textStep("That path is outside the repository."),
    ]);

    const result = await new LlmAgentRunner({ model }).run(makeTurn());

    expect(result).toEqual({ status: "COMPLETED", usage: { inputTokens: 20, outputTokens: 10, costUsd: null } });
    expect(existsSync(join(root, "x"))).toBe(false);
    const reported = events.find((e) => e.type === "toolResult");
    expect(reported).toMatchObject({ toolCallId: "call-1", isError: true, output: expect.stringContaining("refused") });
    const secondPrompt = JSON.stringify(model.doStreamCalls[1]?.prompt);
    expect(secondPrompt).toContain("error-text");
    expect(secondPrompt).toContain("outside the workspace");
  });

  it("reports an unknown tool or malformed input as an error result without failing the turn", async () => {
    const model = scriptedModel([
      [
        { type: "tool-call", toolCallId: "call-1", toolName: "delete_everything", input: "{}" },
        { type: "tool-call", toolCallId: "call-2", toolName: "read_file", input: JSON.stringify({ file: "a" }) },
        { type: "finish", finishReason: { unified: "tool-calls", raw: "tool_calls" }, usage },
      ],
      textStep("Sorry."),
    ]);

    const result = await new LlmAgentRunner({ model }).run(makeTurn());

    expect(result).toEqual({ status: "COMPLETED", usage: { inputTokens: 20, outputTokens: 10, costUsd: null } });
    const errors = events
      .filter((e) => e.type === "toolResult" && e.isError)
      .map((e) => (e as { toolCallId: string }).toolCallId);
    expect(errors.sort()).toEqual(["call-1", "call-2"]);
  });

  it("fails the turn with a clear message when the provider refuses the request", async () => {
    const model = new MockLanguageModelV3({
      doStream: async () => {
        throw new APICallError({
          message: "Incorrect API key provided",
          url: "https://api.example.test/v1/chat/completions",
          requestBodyValues: {},
          statusCode: 401,
          isRetryable: false,
        });
      },
    });

    const result = await new LlmAgentRunner({ model }).run(makeTurn());

    expect(result).toEqual({
      status: "FAILED",
      error: expect.stringMatching(/^model provider refused the request: HTTP 401: Incorrect API key provided/),
    });
  });

  it("fails the turn when the model's stream breaks off with an error", async () => {
    const model = scriptedModel([
      [
        { type: "text-start", id: "t" },
        { type: "text-delta", id: "t", delta: "Let me" },
        { type: "error", error: new Error("upstream connection reset") },
      ],
    ]);

    const result = await new LlmAgentRunner({ model }).run(makeTurn());

    expect(result).toEqual({ status: "FAILED", error: "model call failed: upstream connection reset" });
    expect(events.map(summary)).toEqual(["text:Let me"]);
  });

  it("returns promptly and kills the command when the turn is stopped mid-command", async () => {
    const controller = new AbortController();
    const marker = `umbra-stop-test-${process.pid}-${Date.now()}`;
    const model = scriptedModel([
      toolCallStep("call-1", "run_command", { command: `sleep 30 # ${marker}` }),
      textStep("never"),
    ]);
    const output = recordingOutput(events);
    const turn = makeTurn({
      signal: controller.signal,
      output: {
        ...output,
        toolCall: (call) => {
          output.toolCall(call);
          setTimeout(() => controller.abort(), 200);
        },
      },
    });

    const started = Date.now();
    await new LlmAgentRunner({ model }).run(turn);

    expect(Date.now() - started).toBeLessThan(5_000);
    expect(model.doStreamCalls).toHaveLength(1);
    expect(events.some((e) => e.type === "text")).toBe(false);
    const { stdout: processes } = await run("ps", ["-eo", "args"]);
    expect(processes).not.toContain(marker);
  });

  it("completes with a closing note when the step limit is reached while the model still wants tools", async () => {
    const model = scriptedModel([
      toolCallStep("call-1", "list_dir", {}),
      toolCallStep("call-2", "list_dir", {}),
      textStep("not reached"),
    ]);

    const result = await new LlmAgentRunner({ model, maxSteps: 2 }).run(makeTurn());

    expect(result).toEqual({ status: "COMPLETED", usage: { inputTokens: 20, outputTokens: 10, costUsd: null } });
    expect(model.doStreamCalls).toHaveLength(2);
    const text = events.filter((e) => e.type === "text").map((e) => (e as { text: string }).text);
    expect(text.join("")).toMatch(/Stopped after 2 model steps/);
  });

  it("sends earlier user and assistant messages before the new one, leaving tool traffic out", async () => {
    const model = scriptedModel([textStep("OK.")]);
    const history: ConversationMessage[] = [
      { role: "user", content: "Add a README." },
      { role: "tool", content: '{"toolName":"write_file"}' },
      { role: "assistant", content: "Added README.md." },
      { role: "system", content: "Turn completed." },
    ];

    await new LlmAgentRunner({ model, systemPrompt: "You are a test." }).run(
      makeTurn({ history, message: "Now add a license." }),
    );

    const prompt = model.doStreamCalls[0]?.prompt ?? [];
    expect(prompt.map((m) => [m.role, JSON.stringify(m.content)])).toEqual([
      ["system", JSON.stringify("You are a test.")],
      ["user", expect.stringContaining("Add a README.")],
      ["assistant", expect.stringContaining("Added README.md.")],
      ["user", expect.stringContaining("Now add a license.")],
    ]);
  });

  it("offers the task's code search to the model", async () => {
    const queries: Array<[string, number | undefined]> = [];
    const hit: SearchHit = { path: "src/app.ts", snippet: "export function app()", rank: 0.9 };
    const model = scriptedModel([toolCallStep("call-1", "search_code", { query: "app" }), textStep("Found it.")]);

    await new LlmAgentRunner({ model }).run(
      makeTurn({
        searchCode: async (query, limit) => {
          queries.push([query, limit]);
          return [hit];
        },
      }),
    );

    expect(queries).toEqual([["app", 10]]);
    expect(events.find((e) => e.type === "toolResult")).toMatchObject({ output: { hits: [hit] } });
  });
});

describe("LLM tools", () => {
  it("run_command gives the model only the tail of a long output", async () => {
    const tools = createLlmTools(makeTurn());
    const command = `i=0; while [ $i -lt 3000 ]; do echo "line $i of the output"; i=$((i+1)); done`;

    const result = await tools.run_command.execute?.({ command }, { toolCallId: "c", messages: [] });

    expect(result).toMatchObject({ exitCode: 0, truncated: true });
    const output = (result as { output: string }).output;
    expect(output.length).toBeLessThanOrEqual(RUN_COMMAND_OUTPUT_LIMIT);
    expect(output.endsWith("line 2999 of the output\n")).toBe(true);
    const streamed = events.filter((e) => e.type === "commandOutput").map((e) => (e as { text: string }).text);
    expect(streamed.join("")).toContain("line 0 of the output\n");
  });

  it("edit_file reports an ambiguous match with its code so the model can narrow it down", async () => {
    await writeFile(join(workspace, "a.txt"), "x x");
    const tools = createLlmTools(makeTurn());

    await expect(
      tools.edit_file.execute?.({ path: "a.txt", search: "x", replace: "y" }, { toolCallId: "c", messages: [] }),
    ).rejects.toThrow(/^AMBIGUOUS_MATCH: /);
    await expect(
      tools.edit_file.execute?.(
        { path: "a.txt", search: "x", replace: "y", all: true },
        { toolCallId: "c", messages: [] },
      ),
    ).resolves.toEqual({ path: "a.txt", replacements: 2 });
  });
});

describe("createLlmModel", () => {
  it("names the missing environment variable", () => {
    const missing = (config: Parameters<typeof createLlmModel>[0]) => {
      try {
        createLlmModel(config);
      } catch (error) {
        expect(error).toBeInstanceOf(LlmConfigError);
        return (error as LlmConfigError).variable;
      }
      return "nothing missing";
    };
    expect(missing({ provider: "openai", model: "" })).toBe("LLM_MODEL");
    expect(missing({ provider: "openai", model: "gpt-4.1" })).toBe("OPENAI_API_KEY");
    expect(missing({ provider: "anthropic", model: "claude-sonnet-4-5" })).toBe("ANTHROPIC_API_KEY");
    expect(missing({ provider: "openai-compatible", model: "qwen2.5-coder" })).toBe("LLM_BASE_URL");
    expect(missing({ provider: "openai-compatible", model: "m", baseUrl: "ftp://host" })).toBe("LLM_BASE_URL");
    expect(missing({ provider: "mistral" as "openai", model: "m" })).toBe("LLM_PROVIDER");
  });

  it("builds models for each provider; an endpoint given by base URL needs no key", () => {
    expect(createLlmModel({ provider: "openai", model: "gpt-4.1", apiKey: "sk-test" })).toMatchObject({
      modelId: "gpt-4.1",
    });
    expect(createLlmModel({ provider: "anthropic", model: "claude-sonnet-4-5", apiKey: "k" })).toMatchObject({
      modelId: "claude-sonnet-4-5",
    });
    expect(createLlmModel({ provider: "openai", model: "gpt-4.1", baseUrl: "http://gateway.test/v1" })).toMatchObject({
      modelId: "gpt-4.1",
    });
    const local = createLlmModel({
      provider: "openai-compatible",
      model: "qwen",
      baseUrl: "http://127.0.0.1:11434/v1",
    });
    expect(local).toMatchObject({ modelId: "qwen", provider: expect.stringContaining("umbra-llm") });
  });

  it("drives an OpenAI-compatible endpoint end to end through the agent's tools", async () => {
    const stub = await startOpenAiStub([
      { toolCalls: [{ name: "write_file", arguments: { path: "notes/a.md", content: "# A\n" } }] },
      { toolCalls: [{ name: "run_command", arguments: { command: "ls notes" } }] },
      { text: "Wrote notes/a.md." },
    ]);
    stubs.push(stub);
    const model = createLlmModel({
      provider: "openai-compatible",
      model: "stub",
      baseUrl: stub.baseUrl,
      apiKey: "key",
    });

    const result = await new LlmAgentRunner({ model }).run(makeTurn());

    expect(result).toEqual({ status: "COMPLETED", usage: { inputTokens: 30, outputTokens: 15, costUsd: null } });
    expect(await readFile(join(workspace, "notes/a.md"), "utf8")).toBe("# A\n");
    expect(events.map(summary)).toEqual([
      "toolCall",
      "toolResult",
      "toolCall",
      "commandOutput:a.md\n",
      "toolResult",
      "text:Wrote not",
      "text:es/a.md.",
    ]);
    expect(stub.authorizations).toEqual(["Bearer key", "Bearer key", "Bearer key"]);
    const lastMessages = stub.requests[2]?.messages as Array<{ role: string }>;
    expect(lastMessages.map((m) => m.role)).toEqual(["system", "user", "assistant", "tool", "assistant", "tool"]);
  });

  it("turns a 401 from an OpenAI-compatible endpoint into a failed turn", async () => {
    const stub = await startOpenAiStub([{ status: 401, message: "invalid api key" }]);
    stubs.push(stub);
    const model = createLlmModel({ provider: "openai-compatible", model: "stub", baseUrl: stub.baseUrl });

    const result = await new LlmAgentRunner({ model }).run(makeTurn());

    expect(result).toEqual({
      status: "FAILED",
      error: expect.stringMatching(/^model provider refused the request: HTTP 401: invalid api key/),
    });
    expect(stub.authorizations).toEqual([undefined]);
  });
});
