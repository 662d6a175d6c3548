/**
 * A task run by a real agent CLI (Claude Code, Codex) through the real API,
 * the way a user runs one, for local and remote mode alike: the CLI's fake
 * model vendor scripted to write a file with the CLI's own file tool and run
 * a shell command that prints the key, then to answer two follow-ups — one
 * on the warm workspace, one after the workspace was cleaned up (remote) or
 * archived (local). The server's log is captured, and the machine's command
 * lines are read while the CLI waits for its model.
 *
 * What a user must see is checked here: the file in the diff, the tool calls
 * as structured messages, no agent state committed, the key in no message,
 * diff, task JSON, log line or command line, both follow-ups sending the
 * earlier conversation to the model, and the usage on the task.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { Writable } from "node:stream";
import type { MessageDto, TaskDto } from "@repo/types";
import { expect } from "vitest";
import { type AgentCli, BINARY_VARIABLE, resolveAgentCli } from "../../apps/server/src/agent/cli-binaries";
import { createLogger } from "../../apps/server/src/logger";
import type { ManualClock } from "../../apps/server/src/utils/clock";
import { installedCli, type ProcessInfo, processes } from "./agent-cli-fixture";
import type { TestDatabase } from "./databases";
import { startFakeAnthropic } from "./fake-anthropic";
import type { RecordedRequest } from "./fake-model-server";
import { startFakeResponses } from "./fake-openai-responses";
import { createRepo } from "./git";
import { eventually, readTask } from "./lifecycle";
import { startTestServer, type TestServer } from "./server";

export const FIRST = "Create hello.txt, then shell.txt with a command.";
export const WARM = "Which files did you create?";
export const AFTER_CLEANUP = "What did I ask you first?";

/** Tokens each scripted model answer reports, in script order: three for the first turn, one per follow-up. */
const USAGE = [
  { input: 100, output: 10 },
  { input: 200, output: 20 },
  { input: 300, output: 30 },
  { input: 400, output: 40 },
  { input: 500, output: 50 },
];

interface FakeVendor {
  env: Record<string, string>;
  requests(): RecordedRequest[];
  close(): Promise<void>;
}

export interface CliCase {
  cli: AgentCli;
  keyVariable: "ANTHROPIC_API_KEY" | "OPENAI_API_KEY";
  key: string;
  /** The task's model, when the case names one. */
  model?: string;
  /** The CLI's tools the first turn calls, as tool-call messages name them. */
  toolNames: string[];
  /** The directory in HOME the CLI keeps its sessions in. */
  stateDir: string;
  /** Whether the CLI reports a cost. */
  reportsCost: boolean;
  startVendor(workspace: () => Promise<string>, beforeReply: () => void): Promise<FakeVendor>;
  /** The texts a model request sent for `role`, oldest first. */
  texts(request: RecordedRequest, role: "user" | "assistant"): string[];
}

type ContentBlock = { type: string; text?: string };

export const CLAUDE_CODE: CliCase = {
  cli: "claude-code",
  keyVariable: "ANTHROPIC_API_KEY",
  key: "sk-ant-flow-test-4b9e0d2c7a13",
  toolNames: ["Write", "Bash"],
  stateDir: ".claude",
  reportsCost: true,
  async startVendor(workspace, beforeReply) {
    const fake = await startFakeAnthropic({
      apiKey: this.key,
      beforeReply,
      script: [
        async () => ({
          toolUse: { name: "Write", input: { file_path: join(await workspace(), "hello.txt"), content: "hello\n" } },
          usage: USAGE[0],
        }),
        {
          text: "Now the shell.",
          toolUse: { name: "Bash", input: { command: 'echo "key=$ANTHROPIC_API_KEY" && echo made > shell.txt' } },
          usage: USAGE[1],
        },
        { text: `Done. The key was ${this.key}.`, usage: USAGE[2] },
        { text: "I created hello.txt and shell.txt.", usage: USAGE[3] },
        { text: "You asked me to create hello.txt.", usage: USAGE[4] },
      ],
    });
    return {
      env: { ANTHROPIC_API_KEY: this.key, ANTHROPIC_BASE_URL: fake.baseUrl },
      requests: () => fake.messageRequests(),
      close: fake.close,
    };
  },
  texts(request, role) {
    const messages = (request.body?.messages ?? []) as Array<{ role: string; content: string | ContentBlock[] }>;
    return messages
      .filter((m) => m.role === role)
      .flatMap((m) => (typeof m.content === "string" ? [m.content] : m.content.map((b) => b.text ?? "")));
  },
};

export const CODEX: CliCase = {
  cli: "codex",
  keyVariable: "OPENAI_API_KEY",
  key: "sk-openai-flow-test-83e1f5a0c6",
  model: "gpt-5.5",
  toolNames: ["file_change", "command_execution"],
  stateDir: ".codex",
  reportsCost: false,
  async startVendor(_workspace, beforeReply) {
    const fake = await startFakeResponses({
      apiKey: this.key,
      beforeReply,
      script: [
        {
          customToolCall: {
            name: "apply_patch",
            input: "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n",
          },
          usage: USAGE[0],
        },
        {
          functionCall: {
            name: "exec_command",
            arguments: { cmd: 'echo "key=$OPENAI_API_KEY" && echo made > shell.txt' },
          },
          usage: USAGE[1],
        },
        { text: `Done. The key was ${this.key}.`, usage: USAGE[2] },
        { text: "I created hello.txt and shell.txt.", usage: USAGE[3] },
        { text: "You asked me to create hello.txt.", usage: USAGE[4] },
      ],
    });
    return {
      env: { OPENAI_API_KEY: this.key, OPENAI_BASE_URL: fake.baseUrl },
      requests: () => fake.responseRequests(),
      close: fake.close,
    };
  },
  texts(request, role) {
    const input = (request.body?.input ?? []) as Array<{ type: string; role?: string; content?: ContentBlock[] }>;
    return input
      .filter((item) => item.type === "message" && item.role === role)
      .flatMap((item) => (item.content ?? []).map((part) => part.text ?? ""));
  },
};

export interface FlowOptions {
  mode: "local" | "remote";
  database: TestDatabase;
  /** Remote mode: the clock the cleanup runs on. */
  clock?: ManualClock;
}

type TaskBody = { task: TaskDto };
const CLEANUP_DELAY_MS = 600_000;

/** Runs the whole flow for one CLI; every expectation is checked on the way. */
export async function agentTaskFlow(c: CliCase, options: FlowOptions): Promise<void> {
  const logLines: string[] = [];
  const log = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString("utf8"));
      done();
    },
  });
  const binary = installedCli(c.cli).binary!;
  // Per model request: the bubblewrap processes running while the CLI waited for it.
  const seen = { withKey: [] as string[][], cli: [] as string[][], sandboxes: [] as ProcessInfo[][] };
  let t: TestServer | undefined;
  let taskId: string | undefined;
  const workspace = async () => {
    const id = await eventually(async () => taskId);
    return options.mode === "local" ? join(t!.dataDir, "workspaces", id) : join(t!.dataDir, "vms", id, "workspace");
  };
  const vendor = await c.startVendor(workspace, () => {
    // The CLI is running now, waiting for this answer.
    const all = processes();
    seen.withKey.push(...all.filter((p) => p.argv.some((arg) => arg.includes(c.key))).map((p) => p.argv));
    seen.cli.push(...all.filter((p) => p.argv[0] === binary).map((p) => p.argv));
    seen.sandboxes.push(all.filter((p) => basename(p.argv[0] ?? "") === "bwrap"));
  });
  try {
    t = await startTestServer({
      database: options.database,
      clock: options.clock,
      logger: createLogger("debug", log),
      env: { AGENT_MODE: options.mode, VM_READY_TIMEOUT_MS: "60000", ...vendor.env },
    });
    const server = t;
    const created = await server.api<TaskBody>("POST", "/api/tasks", {
      repoUrl: createRepo({ "README.md": "# Agents\n" }),
      message: FIRST,
      agent: c.cli,
      ...(c.model ? { model: c.model } : {}),
    });
    expect(created.status).toBe(201);
    expect(created.body.task).toMatchObject({ agent: c.cli, model: c.model ?? null });
    const id = created.body.task.id;
    taskId = id;
    await turnEnded(server, id);

    // The file and the command's file are in the diff; nothing of the agent's state is.
    const diff = (await server.api<{ files: { path: string }[]; patch: string }>("GET", `/api/tasks/${id}/diff`)).body;
    expect(diff.files.map((f) => f.path).sort()).toEqual(["hello.txt", "shell.txt"]);
    const stateDir = join(server.dataDir, "agent-state", id);
    expect(existsSync(join(stateDir, c.stateDir))).toBe(true);
    expect(statSync(stateDir).mode & 0o777).toBe(0o700);

    // What the agent did, as text and structured tool calls.
    const messages = await messagesOf(server, id);
    const calls = messages.filter((m) => m.metadata?.kind === "tool-call");
    expect(calls.map((m) => m.metadata?.toolName)).toEqual(c.toolNames);
    for (const call of calls) {
      expect(call.metadata).toMatchObject({ toolCallId: expect.any(String), isError: false });
      expect(call.metadata?.input).toBeDefined();
    }
    const said = messages.filter((m) => m.role === "assistant").map((m) => m.content);
    expect(said.join("\n")).toContain(`Done. The key was [secret:${c.keyVariable}].`);

    // A follow-up on the warm workspace resumes the conversation.
    await followUp(server, id, WARM);
    expect(await messagesOf(server, id)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ role: "assistant", content: "I created hello.txt and shell.txt." }),
      ]),
    );
    const warm = vendor.requests().at(-1)!;
    expect(c.texts(warm, "user").join("\n")).toContain(FIRST);
    expect(c.texts(warm, "user").at(-1)).toContain(WARM);
    expect(c.texts(warm, "assistant").join("\n")).toContain("Done. The key was");
    const session = (await readTask(server, id)).agentSession;
    expect(session?.id).toEqual(expect.any(String));

    // The workspace goes (cleanup, or archive in local mode); the next follow-up still resumes.
    if (options.mode === "remote") {
      const sidecarLog = readFileSync(join(server.dataDir, "vms", id, "sidecar.log"), "utf8");
      expect(sidecarLog).not.toContain(c.key);
      options.clock!.advance(CLEANUP_DELAY_MS);
      await eventually(async () => (await readTask(server, id)).status === "ARCHIVED", 60_000);
    } else {
      expect((await server.api("POST", `/api/tasks/${id}/archive`)).status).toBe(200);
    }
    await followUp(server, id, AFTER_CLEANUP);
    const resumed = vendor.requests().at(-1)!;
    expect(c.texts(resumed, "user").join("\n")).toContain(FIRST);
    expect(c.texts(resumed, "user").join("\n")).toContain(WARM);
    expect(c.texts(resumed, "user").at(-1)).toContain(AFTER_CLEANUP);
    expect((await readTask(server, id)).agentSession?.id).toBe(session?.id);

    // Usage of the three turns, on the task.
    const task = (await server.api<TaskBody>("GET", `/api/tasks/${id}`)).body.task;
    expect(task).toMatchObject({ status: "COMPLETED", usage: { inputTokens: 1500, outputTokens: 150 } });
    if (c.reportsCost) expect(task.usage.costUsd).toBeGreaterThan(0);
    else expect(task.usage.costUsd).toBeNull();

    // The key reached the vendor, and nothing else.
    expect(vendor.requests().length).toBe(USAGE.length);
    expect(seen.cli.length).toBeGreaterThan(0);
    expect(seen.withKey).toEqual([]);
    const everything = JSON.stringify([
      task,
      await messagesOf(server, id),
      (await server.api("GET", `/api/tasks/${id}/diff`)).body,
    ]);
    expect(everything).not.toContain(c.key);
    expect(everything).toContain(`[secret:${c.keyVariable}]`);
    expect(logLines.join("")).toContain('"msg":"turn.end"');
    expect(logLines.join("")).not.toContain(c.key);

    if (options.mode === "remote") {
      // The sandboxes saw the task's state read-write and the CLI read-only, each at its own path
      // (a root server binds them from a staged copy of the host path, so only the target is the same).
      const cli = resolveAgentCli(c.cli, process.env[BINARY_VARIABLE[c.cli]]);
      if (!cli.ok) throw new Error(cli.reason);
      const ofTask = seen.sandboxes.map((running) =>
        running.filter((p) => bindsAt(p.argv, "--bind", stateDir) && bindsAt(p.argv, "--ro-bind", cli.binary.mountDir)),
      );
      expect(ofTask.flat(), "a sandbox with the task's state directory and the CLI").not.toEqual([]);
      // The first turn and the follow-up after the cleanup ran in different sandboxes.
      const first = ofTask[0]!.map((p) => p.pid);
      const afterCleanup = ofTask.at(-1)!.map((p) => p.pid);
      expect(first).not.toEqual([]);
      expect(afterCleanup).not.toEqual([]);
      expect(afterCleanup.filter((pid) => first.includes(pid))).toEqual([]);
    }
  } finally {
    await t?.close();
    await vendor.close();
  }
}

/** Whether a bubblewrap command line binds something at `target` with `kind` (`--bind` or `--ro-bind`). */
function bindsAt(argv: string[], kind: "--bind" | "--ro-bind", target: string): boolean {
  return argv.some((arg, i) => arg === kind && argv[i + 2] === target);
}

async function messagesOf(t: TestServer, id: string): Promise<MessageDto[]> {
  return (await t.api<{ messages: MessageDto[] }>("GET", `/api/tasks/${id}/messages`)).body.messages;
}

async function followUp(t: TestServer, id: string, message: string): Promise<void> {
  const sent = await t.api<TaskBody>("POST", `/api/tasks/${id}/messages`, { message });
  expect(sent.status).toBe(202);
  await turnEnded(t, id);
}

/** Waits until the task's work in this server has ended, and says why a turn failed. */
async function turnEnded(t: TestServer, id: string): Promise<void> {
  await eventually(async () => !t.server.turns.isRunning(id), 180_000);
  const task = await readTask(t, id);
  expect([task.status, task.errorMessage]).toEqual(["COMPLETED", null]);
}
