/**
 * What the tests of the real agent CLIs share: a git repository in a temp
 * directory with the real local executor on it, a state directory beside it
 * (never inside), an AgentOutput that records what the agent reports, the
 * processes of this machine read from /proc (to find command lines and
 * leaked processes), and whether a CLI is installed at all.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { createLocalExecutor, type LocalExecutor } from "@repo/workspace";
import { type AgentCli, BINARY_VARIABLE, resolveAgentCli } from "../../apps/server/src/agent/cli-binaries";
import type { AgentOutput, AgentSession, AgentTurn } from "../../apps/server/src/agent/types";
import { createRepo, tempDir } from "./git";

export type OutputEvent =
  | { type: "text"; text: string }
  | { type: "commandOutput"; stream: string; text: string }
  | { type: "toolCall"; toolCallId: string; toolName: string; input: unknown }
  | { type: "toolResult"; toolCallId: string; toolName: string; output: unknown; isError?: boolean };

export interface CliFixture {
  /** The task's repository (the workspace). */
  workspace: string;
  /** The agent's state directory (its HOME), outside the workspace. */
  home: string;
  executor: LocalExecutor;
  events: OutputEvent[];
  /** All text the agent reported, joined. */
  text(): string;
  turn(message: string, session: AgentSession | null, overrides?: Partial<AgentTurn>): AgentTurn;
  cleanup(): Promise<void>;
}

export async function createCliFixture(): Promise<CliFixture> {
  const workspace = createRepo({ "README.md": "# Demo\n" });
  const outside = tempDir("umbra-agent-state-");
  const home = join(outside, "home");
  await mkdir(home);
  // The executor's own HOME for other commands; the CLI runners replace it with `home`.
  const executor = createLocalExecutor(workspace, { home: join(outside, "executor-home") });
  const events: OutputEvent[] = [];
  const output: AgentOutput = {
    text: (text) => events.push({ type: "text", text }),
    commandOutput: (stream, text) => {
      events.push({ type: "commandOutput", stream, text });
    },
    toolCall: (call) => events.push({ type: "toolCall", ...call }),
    toolResult: (result) => events.push({ type: "toolResult", ...result }),
  };
  return {
    workspace,
    home,
    executor,
    events,
    text: () =>
      events
        .filter((e) => e.type === "text")
        .map((e) => e.text)
        .join(""),
    turn: (message, session, overrides = {}) => ({
      taskId: "task-1",
      message,
      history: [],
      executor,
      searchCode: async () => [],
      signal: new AbortController().signal,
      output,
      agentState: { home, session },
      ...overrides,
    }),
    cleanup: async () => {
      await rm(workspace, { recursive: true, force: true });
      await rm(outside, { recursive: true, force: true });
    },
  };
}

export interface ProcessInfo {
  pid: number;
  argv: string[];
  cwd: string | null;
}

/** The processes of this machine (those whose /proc entries can be read). */
export function processes(): ProcessInfo[] {
  const found: ProcessInfo[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").filter(Boolean);
      let cwd: string | null = null;
      try {
        cwd = readlinkSync(`/proc/${name}/cwd`);
      } catch {
        // a process that ended meanwhile, or one we may not inspect
      }
      found.push({ pid: Number(name), argv, cwd });
    } catch {
      // ended meanwhile
    }
  }
  return found;
}

/** Processes still running in `dir` (their working directory is in it). */
export function processesIn(dir: string): ProcessInfo[] {
  return processes().filter((p) => p.cwd !== null && (p.cwd === dir || p.cwd.startsWith(`${dir}/`)));
}

/**
 * Waits until no process runs in `dir` any more, and returns those still
 * running after `deadlineMs` (an empty list when all ended). A stopped CLI
 * gets SIGTERM and, after the executor's grace period, SIGKILL, so it may
 * outlive the turn by that long.
 */
export async function processesLeftIn(dir: string, deadlineMs = 10_000): Promise<ProcessInfo[]> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const left = processesIn(dir);
    if (left.length === 0 || Date.now() > until) return left;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The CLI's executable, or why the tests of it are left out. */
export function installedCli(cli: AgentCli): { binary: string | null; reason: string } {
  const flag = process.env[cli === "claude-code" ? "UMBRA_TEST_CLAUDE_CODE" : "UMBRA_TEST_CODEX"];
  if (flag === "0") return { binary: null, reason: `${cli} tests turned off by the test runner (not installed)` };
  const resolved = resolveAgentCli(cli, process.env[BINARY_VARIABLE[cli]]);
  if (resolved.ok) return { binary: resolved.binary.path, reason: "" };
  return { binary: null, reason: resolved.reason };
}

/** Says loudly, once per file, that a CLI's tests do not run here. */
export function warnLeftOut(cli: AgentCli, reason: string): void {
  const bar = "!".repeat(78);
  console.warn(`\n${bar}\n!! ${cli} CLI NOT INSTALLED: its tests are left out\n!! ${reason}\n${bar}\n`);
}

/** An AgentOutput that records each call as `[method, ...arguments]`. */
export function callRecorder(): { output: AgentOutput; calls: Array<[string, ...unknown[]]> } {
  const calls: Array<[string, ...unknown[]]> = [];
  return {
    calls,
    output: {
      text: (text) => calls.push(["text", text]),
      commandOutput: (stream, text) => {
        calls.push(["commandOutput", stream, text]);
      },
      toolCall: (call) => calls.push(["toolCall", call]),
      toolResult: (result) => calls.push(["toolResult", result]),
    },
  };
}

/** A CLI that exited normally with nothing on standard error. */
export const cleanExit = { exitCode: 0, signal: null, stderr: "" };
