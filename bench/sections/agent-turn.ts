/**
 * What each agent kind adds to a turn, with a model that answers at once:
 * AgentRunner.run() for a one-request turn ("Say done." → "Done.") on a small
 * repository through the real local executor, for every kind:
 *
 * - `shell` runs `true` and `command` runs `printf '%s' {message}`: the
 *   floor (one process through the executor);
 * - `llm`: the AI SDK against a local OpenAI-compatible stub (real HTTP);
 * - `claude-code` / `codex`: the real CLIs against the fake Anthropic and
 *   OpenAI Responses servers, first turn of a session and a resumed turn
 *   (which loads the session's transcript) measured apart.
 *
 * For the CLIs, "to first request" is spawn → the fake model receiving the
 * request: the CLI's start-up before it asks the model anything. A CLI that
 * is not installed is reported as left out, not as a failure.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createLocalExecutor } from "@repo/workspace";
import { ClaudeCodeAgentRunner } from "../../apps/server/src/agent/claude-code-agent";
import { BINARY_VARIABLE, resolveAgentCli } from "../../apps/server/src/agent/cli-binaries";
import { CodexAgentRunner } from "../../apps/server/src/agent/codex-agent";
import { CommandAgentRunner, ShellAgentRunner } from "../../apps/server/src/agent/command-agent";
import { LlmAgentRunner } from "../../apps/server/src/agent/llm-agent";
import { createLlmModel } from "../../apps/server/src/agent/llm-model";
import type { AgentRunner, AgentSession, AgentTurn } from "../../apps/server/src/agent/types";
import { startFakeAnthropic } from "../../test/support/fake-anthropic";
import { startFakeResponses } from "../../test/support/fake-openai-responses";
import { startOpenAiStub } from "../../test/support/openai-stub";
import { benchTempDir, createSmallRepo } from "../lib/repos";
import type { Row, Section, SectionResult } from "../lib/section";
import { formatSummary, rounded, type Summary, summarize } from "../lib/stats";

interface Series {
  name: string;
  turn: Summary;
  toFirstRequest?: Summary;
}

const silentOutput = { text() {}, commandOutput() {}, toolCall() {}, toolResult() {} };

/** One agent turn on the repository; resolves with its duration in ms and the session it left. */
async function timeTurn(
  runner: AgentRunner,
  workspace: string,
  home: string,
  message: string,
  session: AgentSession | null,
): Promise<{ ms: number; session: AgentSession | null }> {
  const turn: AgentTurn = {
    taskId: "bench",
    message,
    history: [],
    executor: createLocalExecutor(workspace, { home: join(home, "..", "executor-home") }),
    searchCode: async () => [],
    signal: new AbortController().signal,
    output: silentOutput,
    agentState: { home, session },
  };
  const started = performance.now();
  const result = await runner.run(turn);
  const ms = performance.now() - started;
  if (result.status !== "COMPLETED") throw new Error(`${runner.kind} turn failed: ${result.error}`);
  return { ms, session: result.session ?? null };
}

async function measureSimple(name: string, runner: AgentRunner, message: string, count: number): Promise<Series> {
  const repo = createSmallRepo();
  const home = join(benchTempDir(`agent-${name}`), "home");
  mkdirSync(home, { recursive: true });
  await timeTurn(runner, repo.path, home, message, null); // warm-up, not counted
  const samples: number[] = [];
  for (let i = 0; i < count; i++) samples.push((await timeTurn(runner, repo.path, home, message, null)).ms);
  return { name, turn: summarize(samples) };
}

/** First turns (new session each) and resumed turns of one session, with the time to the first model request. */
async function measureCli(
  name: string,
  count: number,
  makeRunner: (onRequest: () => void) => Promise<{ runner: AgentRunner; close(): Promise<void> }>,
): Promise<Series[]> {
  let requestAt = 0;
  const { runner, close } = await makeRunner(() => {
    requestAt ||= performance.now();
  });
  try {
    const repo = createSmallRepo();
    const first: number[] = [];
    const firstToRequest: number[] = [];
    const resumed: number[] = [];
    const resumedToRequest: number[] = [];
    const timed = async (home: string, session: AgentSession | null, into: number[], toRequest: number[]) => {
      requestAt = 0;
      const started = performance.now();
      const turn = await timeTurn(runner, repo.path, home, "Say done.", session);
      into.push(turn.ms);
      toRequest.push(requestAt - started);
      return turn.session;
    };
    const sessionHome = join(benchTempDir(`agent-${name}`), "home");
    mkdirSync(sessionHome, { recursive: true });
    let session = await timed(sessionHome, null, [], []); // warm-up, not counted
    for (let i = 0; i < count; i++) {
      const home = join(benchTempDir(`agent-${name}-${i}`), "home");
      mkdirSync(home, { recursive: true });
      await timed(home, null, first, firstToRequest);
      session = await timed(sessionHome, session, resumed, resumedToRequest);
    }
    return [
      { name: `${name}, new session`, turn: summarize(first), toFirstRequest: summarize(firstToRequest) },
      { name: `${name}, resumed session`, turn: summarize(resumed), toFirstRequest: summarize(resumedToRequest) },
    ];
  } finally {
    await close();
  }
}

export const agentTurnSection: Section = {
  name: "agent-turn",
  title: "Agent turn overhead, model answering at once",
  async run({ quick, log }): Promise<SectionResult> {
    const count = quick ? 3 : 10;
    const series: Series[] = [];
    const leftOut: Record<string, string> = {};

    log("shell and command");
    series.push(await measureSimple("shell", new ShellAgentRunner(), "true", count * 2));
    series.push(
      await measureSimple("command", new CommandAgentRunner("printf '%s' {message}"), "Say done.", count * 2),
    );

    log("llm (AI SDK, OpenAI-compatible stub)");
    const stub = await startOpenAiStub(Array.from({ length: count * 2 + 1 }, () => ({ text: "Done." })));
    try {
      const model = createLlmModel({ provider: "openai-compatible", model: "stub", baseUrl: stub.baseUrl });
      series.push(await measureSimple("llm", new LlmAgentRunner({ model }), "Say done.", count * 2));
    } finally {
      await stub.close();
    }

    const claude = resolveAgentCli("claude-code", process.env[BINARY_VARIABLE["claude-code"]]);
    if (claude.ok) {
      log("claude-code (real CLI, fake Anthropic API)");
      series.push(
        ...(await measureCli("claude-code", count, async (onRequest) => {
          const fake = await startFakeAnthropic({
            script: Array.from({ length: count * 2 + 1 }, () => ({ text: "Done." })),
            beforeReply: onRequest,
          });
          const runner = new ClaudeCodeAgentRunner({
            binary: claude.binary.path,
            apiKey: "bench-key",
            baseUrl: fake.baseUrl,
          });
          return { runner, close: fake.close };
        })),
      );
    } else {
      leftOut["claude-code"] = claude.reason;
    }

    const codex = resolveAgentCli("codex", process.env[BINARY_VARIABLE.codex]);
    if (codex.ok) {
      log("codex (real CLI, fake Responses API)");
      series.push(
        ...(await measureCli("codex", count, async (onRequest) => {
          const fake = await startFakeResponses({
            script: Array.from({ length: count * 2 + 1 }, () => ({ text: "Done." })),
            beforeReply: onRequest,
          });
          const runner = new CodexAgentRunner({
            binary: codex.binary.path,
            apiKey: "bench-key",
            baseUrl: fake.baseUrl,
            model: "gpt-5.5",
          });
          return { runner, close: fake.close };
        })),
      );
    } else {
      leftOut.codex = codex.reason;
    }

    const rows: Row[] = series.map((s) => ({
      metric: `${s.name}: turn`,
      value: s.toFirstRequest
        ? `${formatSummary(s.turn)}; to first model request p50 ${Math.round(s.toFirstRequest.p50)} ms`
        : formatSummary(s.turn),
    }));
    for (const [kind, reason] of Object.entries(leftOut)) {
      rows.push({ metric: `${kind}: turn`, value: `left out: ${reason}` });
    }
    return {
      rows,
      data: {
        count,
        series: series.map((s) => ({
          name: s.name,
          turnMs: rounded(s.turn),
          ...(s.toFirstRequest ? { toFirstRequestMs: rounded(s.toFirstRequest) } : {}),
        })),
        leftOut,
      },
    };
  },
};
