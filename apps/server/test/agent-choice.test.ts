/**
 * A task's agent through the API, with the agent at the outside edge
 * scripted: the choice and its refusal at creation, what GET /api/config
 * offers, and what every turn leaves behind — the state directory as the
 * agent's HOME, the session handed to the next turn, usage per turn and
 * summed on the task, output and errors redacted of the task's secrets.
 */
import { existsSync, statSync } from "node:fs";
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { turns } from "@repo/db";
import type { MessageDto, TaskDto } from "@repo/types";
import { asc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { createRepo, tempDir } from "../../../test/support/git";
import { eventually, readTask } from "../../../test/support/lifecycle";
import { startTestServer, type TestServer } from "../../../test/support/server";
import type { AgentRunner, AgentTurn, AgentTurnResult } from "../src/agent/types";

const targets = await databaseTargets();
const KEY = "sk-ant-choice-test-7a1c93e4f0";
type TaskBody = { task: TaskDto };

/** An executable that answers `--version` like an installed CLI. */
async function versionOnlyCli(dir: string, name: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, "#!/bin/sh\necho 1.0.0\n");
  await chmod(path, 0o755);
  return path;
}

describe("choosing a task's agent", () => {
  let t: TestServer;
  let bin: string;
  beforeAll(async () => {
    bin = tempDir("umbra-agent-bins-");
    t = await startTestServer({
      env: {
        CLAUDE_CODE_BIN: await versionOnlyCli(bin, "claude"),
        CODEX_BIN: await versionOnlyCli(bin, "codex"),
        OPENAI_API_KEY: "sk-openai-choice-test-5e2d",
      },
    });
  });
  afterAll(() => t.close());

  it("lists every agent kind in GET /api/config with why it cannot run", async () => {
    const config = await t.api<{ agent: string; agents: unknown[] }>("GET", "/api/config");
    expect(config.body.agent).toBe("shell");
    expect(config.body.agents).toEqual([
      { kind: "llm", available: false, reason: "no model is configured (set LLM_MODEL)" },
      { kind: "claude-code", available: false, reason: "no API key is configured (set ANTHROPIC_API_KEY)" },
      { kind: "codex", available: true },
      { kind: "command", available: false, reason: "no command is configured (set AGENT_COMMAND)" },
      { kind: "shell", available: true },
    ]);
  });

  it("refuses a task for an agent without its key at creation, with the reason, and creates nothing", async () => {
    const refused = await t.api("POST", "/api/tasks", {
      repoUrl: createRepo(),
      message: "hello",
      agent: "claude-code",
    });
    expect(refused).toEqual({
      status: 400,
      body: {
        error: {
          code: "VALIDATION_ERROR",
          message: "agent: claude-code is not available: no API key is configured (set ANTHROPIC_API_KEY)",
        },
      },
    });
    expect((await t.api<{ tasks: TaskDto[] }>("GET", "/api/tasks")).body.tasks).toEqual([]);
  });

  it("refuses an unknown agent kind, a model for an agent that takes none, and a model that is no name", async () => {
    const repoUrl = createRepo();
    const unknown = await t.api<{ error: { message: string } }>("POST", "/api/tasks", {
      repoUrl,
      message: "hello",
      agent: "gemini",
    });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.message).toBe("agent: agent must be one of llm, claude-code, codex, command, shell");
    const modelForShell = await t.api("POST", "/api/tasks", { repoUrl, message: "hi", agent: "shell", model: "x" });
    expect(modelForShell).toEqual({
      status: 400,
      body: { error: { code: "VALIDATION_ERROR", message: "model: the shell agent takes no model" } },
    });
    const badModel = await t.api<{ error: { message: string } }>("POST", "/api/tasks", {
      repoUrl,
      message: "hi",
      agent: "codex",
      model: "--help me",
    });
    expect(badModel.status).toBe(400);
    expect(badModel.body.error.message).toMatch(/^model: model must be a model name/);
    expect((await t.api<{ tasks: TaskDto[] }>("GET", "/api/tasks")).body.tasks).toEqual([]);
  });

  it("records the server's default agent on a task that names none, with no usage yet", async () => {
    const created = await t.api<TaskBody>("POST", "/api/tasks", { repoUrl: createRepo(), message: "true" });
    expect(created.status).toBe(201);
    expect(created.body.task).toMatchObject({
      agent: "shell",
      model: null,
      usage: { inputTokens: 0, outputTokens: 0, costUsd: null },
    });
    await eventually(async () => (await readTask(t, created.body.task.id)).status === "COMPLETED");
  });
});

/**
 * A scripted claude-code agent: answers each turn by its message, and
 * records the turns each task got.
 */
class ScriptedAgent implements AgentRunner {
  readonly kind = "claude-code" as const;
  private readonly seen = new Map<string, AgentTurn[]>();
  constructor(private readonly script: Record<string, (turn: AgentTurn) => AgentTurnResult>) {}
  async run(turn: AgentTurn): Promise<AgentTurnResult> {
    this.seen.set(turn.taskId, [...this.turnsOf(turn.taskId), turn]);
    const answer = this.script[turn.message];
    if (!answer) throw new Error(`nothing scripted for ${JSON.stringify(turn.message)}`);
    return answer(turn);
  }
  turnsOf(taskId: string): AgentTurn[] {
    return this.seen.get(taskId) ?? [];
  }
}

describe.each(targets)("what a turn leaves behind, on $name", (target) => {
  let database: TestDatabase;
  let t: TestServer;
  const agent = new ScriptedAgent({
    "spend and remember": () => ({
      status: "COMPLETED",
      session: { id: "session-1" },
      usage: { inputTokens: 120, outputTokens: 30, costUsd: 0.25 },
    }),
    "fail without a session": () => ({
      status: "FAILED",
      error: "the vendor said no",
      usage: { inputTokens: 5, outputTokens: 1, costUsd: null },
    }),
    "count nothing": () => ({ status: "COMPLETED", session: { id: "session-2" } }),
    "leak the key": (turn) => {
      turn.output.text(`Working with ${KEY.slice(0, 10)}`);
      turn.output.text(`${KEY.slice(10)} now.`);
      turn.output.toolCall({ toolCallId: "c1", toolName: "Bash", input: { command: `echo ${KEY}` } });
      turn.output.toolResult({ toolCallId: "c1", toolName: "Bash", output: KEY });
      return { status: "FAILED", error: `the vendor refused ${KEY}` };
    },
  });

  beforeAll(async () => {
    database = await target.open();
    t = await startTestServer({ database, agent, env: { ANTHROPIC_API_KEY: KEY } });
  });
  afterAll(async () => {
    await t.close();
    await database.close();
  });

  /** Creates a task (or sends a follow-up) and waits until its turn has ended. */
  async function turn(message: string, taskId?: string): Promise<string> {
    const sent = taskId
      ? await t.api<TaskBody>("POST", `/api/tasks/${taskId}/messages`, { message })
      : await t.api<TaskBody>("POST", "/api/tasks", { repoUrl: createRepo(), message });
    expect(sent.status).toBe(taskId ? 202 : 201);
    const id = sent.body.task.id;
    await eventually(async () => !t.server.turns.isRunning(id));
    return id;
  }

  it("gives the agent the task's state directory and the last session, and records usage per turn and in total", async () => {
    const id = await turn("spend and remember");
    await turn("fail without a session", id);
    await turn("count nothing", id);

    const home = join(t.dataDir, "agent-state", id);
    expect(agent.turnsOf(id).map((each) => each.agentState)).toEqual([
      { home, session: null },
      { home, session: { id: "session-1" } },
      // The failed turn returned no session: the one before it stays.
      { home, session: { id: "session-1" } },
    ]);
    expect(statSync(home).mode & 0o777).toBe(0o700);

    const rows = await t.server.database.db
      .select()
      .from(turns)
      .where(eq(turns.taskId, id))
      .orderBy(asc(turns.startedAt), asc(turns.endedAt));
    expect(rows.map((r) => [r.agent, r.outcome, r.inputTokens, r.outputTokens, r.costUsd])).toEqual([
      ["claude-code", "COMPLETED", 120, 30, 0.25],
      ["claude-code", "FAILED", 5, 1, null],
      ["claude-code", "COMPLETED", null, null, null],
    ]);
    const task = (await t.api<TaskBody>("GET", `/api/tasks/${id}`)).body.task;
    expect(task).toMatchObject({ agent: "claude-code", status: "COMPLETED" });
    expect(task.usage).toEqual({ inputTokens: 125, outputTokens: 31, costUsd: 0.25 });
    expect((await readTask(t, id)).agentSession).toEqual({ id: "session-2" });
  });

  it("counts usage per agent kind in /metrics", async () => {
    const before = await (await fetch(`${t.url}/metrics`)).text();
    const counted = (text: string, line: string) => Number(text.match(new RegExp(`^${line} (\\S+)$`, "m"))?.[1] ?? 0);
    await turn("spend and remember");
    const after = await (await fetch(`${t.url}/metrics`)).text();
    const input = 'umbra_agent_input_tokens_total\\{agent="claude-code"\\}';
    const output = 'umbra_agent_output_tokens_total\\{agent="claude-code"\\}';
    const cost = 'umbra_agent_cost_usd_total\\{agent="claude-code"\\}';
    const completed = 'umbra_agent_turns_total\\{agent="claude-code",outcome="COMPLETED"\\}';
    expect([input, output, cost, completed].map((line) => counted(after, line) - counted(before, line))).toEqual([
      120, 30, 0.25, 1,
    ]);
  });

  it("redacts the configured keys from streamed text, tool calls, the stored messages and the turn's error", async () => {
    const id = await turn("leak the key");
    const messages = (await t.api<{ messages: MessageDto[] }>("GET", `/api/tasks/${id}/messages`)).body.messages;
    expect(messages.map((m) => [m.role, m.content, m.metadata])).toEqual([
      ["user", "leak the key", null],
      ["assistant", "Working with [secret:ANTHROPIC_API_KEY] now.", { kind: "text" }],
      [
        "tool",
        "[secret:ANTHROPIC_API_KEY]",
        {
          kind: "tool-call",
          toolCallId: "c1",
          toolName: "Bash",
          input: { command: "echo [secret:ANTHROPIC_API_KEY]" },
          output: "[secret:ANTHROPIC_API_KEY]",
          isError: false,
        },
      ],
    ]);
    const task = (await t.api<TaskBody>("GET", `/api/tasks/${id}`)).body.task;
    expect([task.status, task.errorMessage]).toEqual(["FAILED", "the vendor refused [secret:ANTHROPIC_API_KEY]"]);
  });

  it("removes the task's state directory with the task", async () => {
    const id = await turn("count nothing");
    const home = join(t.dataDir, "agent-state", id);
    expect(statSync(home).isDirectory()).toBe(true);
    expect((await t.api("DELETE", `/api/tasks/${id}`)).status).toBe(204);
    expect(existsSync(home)).toBe(false);
  });
});
