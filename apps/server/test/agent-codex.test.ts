/**
 * The `codex` agent: the real Codex CLI on a real git repository through the
 * local executor, with a scripted OpenAI Responses API on 127.0.0.1 as the
 * only fake.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type CliFixture,
  createCliFixture,
  installedCli,
  type OutputEvent,
  processes,
  processesLeftIn,
  warnLeftOut,
} from "../../../test/support/agent-cli-fixture";
import type { RecordedRequest } from "../../../test/support/fake-model-server";
import {
  type FakeResponses,
  type ResponsesReply,
  startFakeResponses,
} from "../../../test/support/fake-openai-responses";
import { git } from "../../../test/support/git";
import { CodexAgentRunner } from "../src/agent/codex-agent";

const KEY = "sk-test-codex-8e1f4a2b9c77d0";
/** A model Codex knows, so that it offers its apply_patch and exec_command tools. */
const MODEL = "gpt-5.5";
const THREAD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const { binary, reason } = installedCli("codex");
const REQUIRE_ALL = process.env.UMBRA_TEST_REQUIRE_ALL === "1";
if (!binary) warnLeftOut("codex", reason);

let fixture: CliFixture;
let fake: FakeResponses | undefined;

beforeEach(async () => {
  fixture = await createCliFixture();
  fake = undefined;
});

afterEach(async () => {
  await fake?.close();
  // Whatever the turn started has ended with it (a stopped CLI within the executor's kill grace period).
  try {
    expect(await processesLeftIn(fixture.workspace)).toEqual([]);
  } finally {
    await fixture.cleanup();
  }
});

async function fakeModel(
  script: ResponsesReply[],
  beforeReply?: (request: RecordedRequest, index: number) => void | Promise<void>,
) {
  fake = await startFakeResponses({ apiKey: KEY, script, beforeReply });
  return fake;
}

function runner(overrides: { apiKey?: string } = {}): CodexAgentRunner {
  return new CodexAgentRunner({ binary: binary!, apiKey: KEY, baseUrl: fake?.baseUrl, model: MODEL, ...overrides });
}

type InputItem = { type: string; role?: string; content?: Array<{ type: string; text?: string }> };

/** The texts of the messages of `role` a Responses request sent, oldest first. */
function texts(request: RecordedRequest, role: "user" | "assistant"): string[] {
  return ((request.body?.input ?? []) as InputItem[])
    .filter((item) => item.type === "message" && item.role === role)
    .flatMap((item) => (item.content ?? []).map((part) => part.text ?? ""));
}

const toolEvents = (events: OutputEvent[]) => events.filter((e) => e.type === "toolCall" || e.type === "toolResult");

describe("Codex CLI", () => {
  it.runIf(REQUIRE_ALL)("is installed when every test must run", () => {
    expect(binary, reason).not.toBeNull();
  });

  it("reports a binary that is not there as the turn's error", async () => {
    const result = await new CodexAgentRunner({ binary: "/nonexistent/codex", apiKey: KEY }).run(
      fixture.turn("hello", null),
    );
    expect(result.status).toBe("FAILED");
    expect(result.status === "FAILED" && result.error).toMatch(/Codex could not be started \(not found\)/);
  });

  it("refuses to run without a state directory outside the workspace", async () => {
    const result = await new CodexAgentRunner({ binary: "/nonexistent/codex", apiKey: KEY }).run({
      ...fixture.turn("hello", null),
      agentState: undefined,
    });
    expect(result).toEqual({
      status: "FAILED",
      error: "the codex agent needs a per-task state directory (agentState)",
    });
  });

  describe.skipIf(!binary)("driven by a fake model", () => {
    it("writes a file and runs a command with its own tools, reporting text and tool calls", async () => {
      await fakeModel([
        {
          customToolCall: {
            name: "apply_patch",
            input: "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n",
          },
        },
        { functionCall: { name: "exec_command", arguments: { cmd: "cat hello.txt && echo made > shell.txt" } } },
        { text: "All done: two files." },
      ]);

      const result = await runner().run(fixture.turn("Create hello.txt, then shell.txt", null));

      expect(result).toMatchObject({ status: "COMPLETED", session: { id: expect.stringMatching(THREAD_ID) } });
      expect(await readFile(join(fixture.workspace, "hello.txt"), "utf8")).toBe("hello\n");
      expect(await readFile(join(fixture.workspace, "shell.txt"), "utf8")).toBe("made\n");
      const tools = toolEvents(fixture.events);
      expect(tools.map((e) => `${e.type}:${"toolName" in e ? e.toolName : ""}`)).toEqual([
        "toolCall:file_change",
        "toolResult:file_change",
        "toolCall:command_execution",
        "toolResult:command_execution",
      ]);
      expect(tools[0]).toMatchObject({
        input: { changes: [{ path: join(fixture.workspace, "hello.txt"), kind: "add" }] },
      });
      expect(tools[1]).toMatchObject({ toolCallId: (tools[0] as { toolCallId: string }).toolCallId, isError: false });
      expect(tools[2]).toMatchObject({
        input: { command: expect.stringContaining("cat hello.txt && echo made > shell.txt") },
      });
      expect(tools[3]).toMatchObject({ output: "hello\n", isError: false });
      expect(fixture.text()).toBe("All done: two files.");
      expect(fixture.events.at(-1)).toEqual({ type: "text", text: "All done: two files." });
    });

    it("reports a failing command as an error result", async () => {
      await fakeModel([
        { functionCall: { name: "exec_command", arguments: { cmd: "exit 3" } } },
        { text: "It failed." },
      ]);
      const result = await runner().run(fixture.turn("run exit 3", null));
      expect(result.status).toBe("COMPLETED");
      expect(toolEvents(fixture.events).at(-1)).toMatchObject({ toolName: "command_execution", isError: true });
    });

    it("keeps its state in HOME outside the workspace, never in the workspace", async () => {
      await fakeModel([
        { customToolCall: { name: "apply_patch", input: "*** Begin Patch\n*** Add File: a.txt\n+a\n*** End Patch\n" } },
        { text: "ok" },
      ]);
      const result = await runner().run(fixture.turn("write a.txt", null));
      expect(result.status).toBe("COMPLETED");
      expect(git(fixture.workspace, "status", "--porcelain", "--ignored", "--untracked-files=all")).toBe("?? a.txt");
      expect(existsSync(join(fixture.home, ".codex", "sessions"))).toBe(true);
    });

    it("resumes its session on the next turn: the model receives the earlier conversation", async () => {
      await fakeModel([
        { text: "I will remember PAPAYA.", usage: { input: 100, output: 10 } },
        { text: "The word was PAPAYA.", usage: { input: 300, output: 20 } },
      ]);
      const first = await runner().run(fixture.turn("Remember the word PAPAYA.", null));
      expect(first).toMatchObject({
        status: "COMPLETED",
        session: { id: expect.stringMatching(THREAD_ID) },
        usage: { inputTokens: 100, outputTokens: 10, costUsd: null },
      });

      const second = await runner().run(fixture.turn("Which word?", first.session!));

      expect(second).toMatchObject({ status: "COMPLETED", session: { id: first.session!.id } });
      const [, resumed] = fake!.responseRequests();
      expect(texts(resumed!, "user")).toContain("Remember the word PAPAYA.");
      expect(texts(resumed!, "user").at(-1)).toBe("Which word?");
      expect(texts(resumed!, "assistant")).toContain("I will remember PAPAYA.");
      // Codex reports running totals; the turn's usage is its own share.
      expect(second.usage).toEqual({ inputTokens: 300, outputTokens: 20, costUsd: null });
      expect(second.session?.usageTotals).toEqual({ inputTokens: 400, outputTokens: 30 });
    });

    it("starts a new conversation, and says so, when the session to resume is gone", async () => {
      await fakeModel([{ text: "Fresh start." }]);
      const lost = {
        id: "019a0000-0000-7000-8000-000000000000",
        usageTotals: { inputTokens: 5000, outputTokens: 500 },
      };
      const result = await runner().run(fixture.turn("Continue", lost));
      expect(result).toMatchObject({ status: "COMPLETED", session: { id: expect.stringMatching(THREAD_ID) } });
      expect(result.session!.id).not.toBe(lost.id);
      expect(result.usage).toEqual({ inputTokens: 13, outputTokens: 5, costUsd: null });
      expect(fixture.text()).toContain("earlier session was not found");
      expect(fixture.text()).toContain("Fresh start.");
    });

    it("passes a message full of shell syntax to the model exactly as written", async () => {
      const message = `--help $(touch pwned) \`touch pwned2\` "double" 'single' ; rm -rf ./README.md\n$HOME \\ %s`;
      await fakeModel([{ text: "ok" }]);
      const result = await runner().run(fixture.turn(message, null));
      expect(result.status).toBe("COMPLETED");
      expect(texts(fake!.responseRequests()[0]!, "user").at(-1)).toBe(message);
      expect(existsSync(join(fixture.workspace, "pwned"))).toBe(false);
      expect(existsSync(join(fixture.workspace, "pwned2"))).toBe(false);
      expect(existsSync(join(fixture.workspace, "README.md"))).toBe(true);
    });

    it("keeps the key out of every command line and of the commands it runs, and redacts it from what it reports", async () => {
      const seen: { cli: string[][]; withKey: string[][] } = { cli: [], withKey: [] };
      await fakeModel(
        [
          { functionCall: { name: "exec_command", arguments: { cmd: 'echo "key=$OPENAI_API_KEY"' } } },
          { text: `Your key is ${KEY}, in case you wondered.` },
        ],
        () => {
          // The CLI is running now, waiting for this answer.
          const all = processes();
          seen.cli.push(...all.filter((p) => p.argv[0] === binary).map((p) => p.argv));
          seen.withKey.push(...all.filter((p) => p.argv.some((arg) => arg.includes(KEY))).map((p) => p.argv));
        },
      );

      const result = await runner().run(fixture.turn("show me the key", null));

      expect(result.status).toBe("COMPLETED");
      // The CLI was running, non-interactive, with its own prompts (and Codex its plugins) off.
      expect(seen.cli.length).toBeGreaterThan(0);
      expect(seen.cli[0]).toEqual(
        expect.arrayContaining([
          "exec",
          "--json",
          "--dangerously-bypass-approvals-and-sandbox",
          "--disable",
          "plugins",
        ]),
      );
      expect(seen.withKey).toEqual([]);
      // The key did reach the model vendor, through the CLI's environment.
      expect(fake!.responseRequests()[0]!.headers.authorization).toBe(`Bearer ${KEY}`);
      expect(toolEvents(fixture.events).at(-1)).toMatchObject({ output: "key=\n" });
      expect(JSON.stringify(fixture.events)).not.toContain(KEY);
      expect(fixture.text()).toBe("Your key is [secret:OPENAI_API_KEY], in case you wondered.");
    });

    it("fails at once with a clear error when the key is refused, without repeating the key", async () => {
      await fakeModel([{ text: "never sent" }]);
      const wrong = "sk-wrong-key-2c4e6a8b";
      const started = Date.now();
      const result = await runner({ apiKey: wrong }).run(fixture.turn("hello", null));
      expect(result.status).toBe("FAILED");
      const error = result.status === "FAILED" ? result.error : "";
      expect(error).toMatch(/refused the API key \(unexpected status 401 Unauthorized.*check OPENAI_API_KEY/);
      // The fake quotes the key it got; the error shows its name instead.
      expect(error).toContain("[secret:OPENAI_API_KEY]");
      expect(error).not.toContain(wrong);
      expect(Date.now() - started).toBeLessThan(20_000);
    });

    it("fails with the provider's reason when the model call fails", async () => {
      await fakeModel([
        { error: { status: 400, message: "Your input exceeds the context window.", code: "context_length_exceeded" } },
      ]);
      const result = await runner().run(fixture.turn("hello", null));
      expect(result.status).toBe("FAILED");
      expect(result.status === "FAILED" && result.error).toMatch(/^Codex failed: .*context window/);
    });

    it("stops the CLI promptly when the turn is stopped, keeping the session for the next turn", async () => {
      const controller = new AbortController();
      await fakeModel([{ text: "too late" }, { text: "Resumed." }], (_request, index) => {
        if (index > 0) return;
        controller.abort();
        // Hold the answer back: the CLI must be ended, not finish.
        return new Promise(() => {});
      });
      const stopped = await runner().run(fixture.turn("Plan the refactoring.", null, { signal: controller.signal }));
      expect(stopped).toMatchObject({
        status: "FAILED",
        error: "the turn was stopped",
        session: { id: expect.stringMatching(THREAD_ID) },
      });

      const next = await runner().run(fixture.turn("Go on.", stopped.session!));

      expect(next).toMatchObject({ status: "COMPLETED", session: { id: stopped.session!.id } });
      const [, second] = fake!.responseRequests();
      expect(texts(second!, "user")).toContain("Plan the refactoring.");
    });
  });
});
