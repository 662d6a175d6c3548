/**
 * The `claude-code` agent: the real Claude Code CLI on a real git repository
 * through the local executor, with a scripted Anthropic Messages API on
 * 127.0.0.1 as the only fake.
 */
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
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
import { type AnthropicReply, type FakeAnthropic, startFakeAnthropic } from "../../../test/support/fake-anthropic";
import type { RecordedRequest } from "../../../test/support/fake-model-server";
import { git } from "../../../test/support/git";
import { eventually } from "../../../test/support/lifecycle";
import { ClaudeCodeAgentRunner } from "../src/agent/claude-code-agent";

const KEY = "sk-ant-test-5f0c2e9a7d41b3";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const { binary, reason } = installedCli("claude-code");
const REQUIRE_ALL = process.env.UMBRA_TEST_REQUIRE_ALL === "1";
if (!binary) warnLeftOut("claude-code", reason);

let fixture: CliFixture;
let fake: FakeAnthropic | undefined;

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
  script: AnthropicReply[],
  options: { apiKey?: string; beforeReply?: (r: RecordedRequest, i: number) => void | Promise<void> } = {},
) {
  fake = await startFakeAnthropic({ apiKey: KEY, script, ...options });
  return fake;
}

function runner(overrides: { apiKey?: string; binary?: string } = {}): ClaudeCodeAgentRunner {
  return new ClaudeCodeAgentRunner({ binary: binary!, apiKey: KEY, baseUrl: fake?.baseUrl, ...overrides });
}

/** Resolves once Claude Code has written `text` into a session transcript under its HOME. */
async function transcriptHolds(text: string): Promise<void> {
  const projects = join(fixture.home, ".claude", "projects");
  await eventually(async () => {
    const names = await readdir(projects, { recursive: true }).catch(() => [] as string[]);
    for (const name of names.filter((n) => n.endsWith(".jsonl"))) {
      if ((await readFile(join(projects, name), "utf8")).includes(text)) return true;
    }
    return false;
  });
}

/** The text of the user turns a Messages request sent, oldest first. */
function userTexts(request: RecordedRequest): string[] {
  const messages = request.body?.messages as Array<{
    role: string;
    content: string | Array<{ type: string; text?: string }>;
  }>;
  return messages
    .filter((m) => m.role === "user")
    .flatMap((m) => (typeof m.content === "string" ? [m.content] : m.content.map((b) => b.text ?? "")));
}

function assistantTexts(request: RecordedRequest): string[] {
  const messages = request.body?.messages as Array<{
    role: string;
    content: string | Array<{ type: string; text?: string }>;
  }>;
  return messages
    .filter((m) => m.role === "assistant")
    .flatMap((m) => (typeof m.content === "string" ? [m.content] : m.content.map((b) => b.text ?? "")));
}

/** The text the agent reported, one entry per run of text between other output. */
function textRuns(events: OutputEvent[]): string[] {
  const runs: string[] = [];
  let last: OutputEvent | undefined;
  for (const event of events) {
    if (event.type === "text") {
      if (last?.type === "text") runs[runs.length - 1] += event.text;
      else runs.push(event.text);
    }
    last = event;
  }
  return runs;
}

describe("Claude Code CLI", () => {
  it.runIf(REQUIRE_ALL)("is installed when every test must run", () => {
    expect(binary, reason).not.toBeNull();
  });

  it("reports a binary that is not there as the turn's error", async () => {
    const result = await new ClaudeCodeAgentRunner({ binary: "/nonexistent/claude", apiKey: KEY }).run(
      fixture.turn("hello", null),
    );
    expect(result.status).toBe("FAILED");
    expect(result.status === "FAILED" && result.error).toMatch(/Claude Code could not be started \(not found\)/);
  });

  it("refuses to run without a state directory outside the workspace", async () => {
    const result = await new ClaudeCodeAgentRunner({ binary: "/nonexistent/claude", apiKey: KEY }).run({
      ...fixture.turn("hello", null),
      agentState: undefined,
    });
    expect(result).toEqual({
      status: "FAILED",
      error: "the claude-code agent needs a per-task state directory (agentState)",
    });
  });

  describe.skipIf(!binary)("driven by a fake model", () => {
    it("writes a file and runs a command with its own tools, reporting text and tool calls as they happen", async () => {
      await fakeModel([
        { toolUse: { name: "Write", input: { file_path: join(fixture.workspace, "hello.txt"), content: "hello\n" } } },
        {
          text: "Now the shell.",
          toolUse: { name: "Bash", input: { command: "cat hello.txt && echo made > shell.txt" } },
        },
        { text: "All done: two files." },
      ]);

      const result = await runner().run(fixture.turn("Create hello.txt, then shell.txt", null));

      expect(result).toMatchObject({ status: "COMPLETED", session: { id: expect.stringMatching(UUID) } });
      expect(await readFile(join(fixture.workspace, "hello.txt"), "utf8")).toBe("hello\n");
      expect(await readFile(join(fixture.workspace, "shell.txt"), "utf8")).toBe("made\n");
      const kinds = fixture.events
        .filter((e) => e.type !== "text")
        .map((e) => `${e.type}:${"toolName" in e ? e.toolName : ""}`);
      expect(kinds).toEqual(["toolCall:Write", "toolResult:Write", "toolCall:Bash", "toolResult:Bash"]);
      const [writeCall, writeResult, bashCall, bashResult] = fixture.events.filter((e) => e.type !== "text");
      expect(writeCall).toMatchObject({ input: { file_path: join(fixture.workspace, "hello.txt") } });
      expect(writeResult).toMatchObject({
        toolCallId: (writeCall as { toolCallId: string }).toolCallId,
        isError: false,
      });
      expect(bashCall).toMatchObject({ input: { command: "cat hello.txt && echo made > shell.txt" } });
      expect(bashResult).toMatchObject({ output: "hello", isError: false });
      expect(textRuns(fixture.events)).toEqual(["Now the shell.", "All done: two files."]);
      // Text streamed in several deltas, and before the tool call that followed it.
      expect(fixture.events.filter((e) => e.type === "text").length).toBeGreaterThan(2);
      expect(fixture.events.findIndex((e) => e.type === "text")).toBeLessThan(
        fixture.events.findIndex((e) => e.type === "toolCall" && e.toolName === "Bash"),
      );
    });

    it("reports the turn's tokens and cost", async () => {
      await fakeModel([
        { toolUse: { name: "Bash", input: { command: "true" } }, usage: { input: 100, output: 20 } },
        { text: "ok", usage: { input: 150, output: 30 } },
      ]);
      const result = await runner().run(fixture.turn("run true", null));
      expect(result.status).toBe("COMPLETED");
      expect(result.usage).toMatchObject({ inputTokens: 250, outputTokens: 50 });
      expect(result.usage?.costUsd).toBeGreaterThan(0);
    });

    it("keeps its state in HOME outside the workspace, never in the workspace", async () => {
      await fakeModel([
        { toolUse: { name: "Write", input: { file_path: join(fixture.workspace, "a.txt"), content: "a" } } },
        { text: "ok" },
      ]);
      const result = await runner().run(fixture.turn("write a.txt", null));
      expect(result.status).toBe("COMPLETED");
      expect(git(fixture.workspace, "status", "--porcelain", "--ignored", "--untracked-files=all")).toBe("?? a.txt");
      expect(existsSync(join(fixture.home, ".claude"))).toBe(true);
    });

    it("resumes its session on the next turn: the model receives the earlier conversation", async () => {
      await fakeModel([{ text: "I will remember PAPAYA." }, { text: "The word was PAPAYA." }]);
      const first = await runner().run(fixture.turn("Remember the word PAPAYA.", null));
      expect(first).toMatchObject({ status: "COMPLETED", session: { id: expect.stringMatching(UUID) } });

      const second = await runner().run(fixture.turn("Which word?", first.session!));

      expect(second).toMatchObject({ status: "COMPLETED", session: { id: first.session!.id } });
      const [, resumed] = fake!.messageRequests();
      expect(userTexts(resumed!).join("\n")).toContain("Remember the word PAPAYA.");
      expect(userTexts(resumed!).at(-1)).toBe("Which word?");
      expect(assistantTexts(resumed!)).toContain("I will remember PAPAYA.");
      // Usage is per turn, not the session's running total.
      expect(second.usage).toMatchObject({ inputTokens: 11, outputTokens: 7 });
    });

    it("starts a new conversation, and says so, when the session to resume is gone", async () => {
      await fakeModel([{ text: "Fresh start." }]);
      const lost = { id: "0b6f7c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e" };
      const result = await runner().run(fixture.turn("Continue", lost));
      expect(result).toMatchObject({ status: "COMPLETED", session: { id: expect.stringMatching(UUID) } });
      expect(result.session!.id).not.toBe(lost.id);
      expect(fixture.text()).toContain("earlier session was not found");
      expect(fixture.text()).toContain("Fresh start.");
    });

    it("passes a message full of shell syntax to the model exactly as written", async () => {
      const message = `--help $(touch pwned) \`touch pwned2\` "double" 'single' ; rm -rf ./README.md\n$HOME \\ %s`;
      await fakeModel([{ text: "ok" }]);
      const result = await runner().run(fixture.turn(message, null));
      expect(result.status).toBe("COMPLETED");
      expect(userTexts(fake!.messageRequests()[0]!).at(-1)).toBe(message);
      expect(existsSync(join(fixture.workspace, "pwned"))).toBe(false);
      expect(existsSync(join(fixture.workspace, "pwned2"))).toBe(false);
      expect(existsSync(join(fixture.workspace, "README.md"))).toBe(true);
    });

    it("keeps the key out of every command line and redacts it from everything it reports", async () => {
      const seen: { cli: string[][]; withKey: string[][] } = { cli: [], withKey: [] };
      await fakeModel(
        [
          { toolUse: { name: "Bash", input: { command: 'echo "key=$ANTHROPIC_API_KEY"' } } },
          { text: `Your key is ${KEY}, in case you wondered.` },
        ],
        {
          beforeReply: () => {
            // The CLI is running now, waiting for this answer.
            const all = processes();
            seen.cli.push(...all.filter((p) => p.argv[0] === binary).map((p) => p.argv));
            seen.withKey.push(...all.filter((p) => p.argv.some((arg) => arg.includes(KEY))).map((p) => p.argv));
          },
        },
      );

      const result = await runner().run(fixture.turn("show me the key", null));

      expect(result.status).toBe("COMPLETED");
      // The CLI was running, non-interactive, with its own prompts (and Codex its plugins) off.
      expect(seen.cli.length).toBeGreaterThan(0);
      expect(seen.cli[0]).toEqual(
        expect.arrayContaining(["-p", "--output-format", "stream-json", "--dangerously-skip-permissions"]),
      );
      expect(seen.withKey).toEqual([]);
      // The key did reach the model vendor, through the CLI's environment.
      expect(fake!.messageRequests()[0]!.headers["x-api-key"]).toBe(KEY);
      expect(JSON.stringify(fixture.events)).not.toContain(KEY);
      expect(fixture.events.find((e) => e.type === "toolResult")).toMatchObject({
        output: "key=[secret:ANTHROPIC_API_KEY]",
      });
      expect(fixture.text()).toBe("Your key is [secret:ANTHROPIC_API_KEY], in case you wondered.");
    });

    it("fails at once with a clear error when the key is refused", async () => {
      await fakeModel([{ text: "never sent" }]);
      const started = Date.now();
      const result = await runner({ apiKey: "sk-ant-wrong-key-0000" }).run(fixture.turn("hello", null));
      expect(result.status).toBe("FAILED");
      expect(result.status === "FAILED" && result.error).toMatch(
        /refused the API key \(HTTP 401.*check ANTHROPIC_API_KEY/,
      );
      expect(result.status === "FAILED" && result.error).not.toContain("sk-ant-wrong-key-0000");
      // Not the CLI's minutes of retries.
      expect(Date.now() - started).toBeLessThan(20_000);
    });

    it("fails with the provider's reason when the model call fails", async () => {
      await fakeModel([
        {
          error: { status: 400, type: "invalid_request_error", message: "prompt is too long: 250000 tokens > 200000" },
        },
      ]);
      const result = await runner().run(fixture.turn("hello", null));
      expect(result.status).toBe("FAILED");
      expect(result.status === "FAILED" && result.error).toMatch(/^Claude Code failed: .*prompt is too long/i);
    });

    it("stops the CLI promptly when the turn is stopped, keeping the session for the next turn", async () => {
      const controller = new AbortController();
      await fakeModel([{ text: "too late" }, { text: "Resumed." }], {
        beforeReply: async (_request, index) => {
          if (index > 0) return;
          // The stop comes once the CLI has saved the conversation so far (it writes its transcript
          // on its own schedule, later on a busy machine): what the stop must then not lose.
          await transcriptHolds("Plan the refactoring.");
          controller.abort();
          // Hold the answer back: the CLI must be ended, not finish.
          return new Promise(() => {});
        },
      });
      const stopped = await runner().run(fixture.turn("Plan the refactoring.", null, { signal: controller.signal }));
      expect(stopped).toMatchObject({
        status: "FAILED",
        error: "the turn was stopped",
        session: { id: expect.stringMatching(UUID) },
      });

      const next = await runner().run(fixture.turn("Go on.", stopped.session!));

      expect(next).toMatchObject({ status: "COMPLETED", session: { id: stopped.session!.id } });
      const [, second] = fake!.messageRequests();
      expect(userTexts(second!)).toContain("Plan the refactoring.");
    });
  });
});
