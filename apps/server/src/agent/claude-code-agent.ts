/**
 * The `claude-code` agent: the Claude Code CLI, non-interactive
 * (`claude -p`, stream-json events), with its permission prompts bypassed —
 * Umbra's workspace (a sandbox in remote mode) is the boundary.
 *
 * Invariants:
 * - HOME of the CLI is the task's state directory (AgentTurn.agentState),
 *   never the workspace, so settings and session transcripts stay out of
 *   the task's commits and survive with the task.
 * - The first turn starts a session with an id chosen here; later turns
 *   resume the session they are given when its transcript is in HOME, and
 *   otherwise start a new one (the events say so in the conversation).
 * - The API key and base URL reach the CLI only through its environment
 *   (see cli-agent.ts); the message through standard input.
 */
import { randomUUID } from "node:crypto";
import { ClaudeCodeEvents } from "./claude-code-events";
import { pipeMessageInto, runCli } from "./cli-agent";
import { shellQuote } from "./command-agent";
import type { AgentRunner, AgentTurn, AgentTurnResult } from "./types";

export interface ClaudeCodeAgentOptions {
  /** The `claude` executable, as seen where the workspace's commands run. */
  binary: string;
  /** ANTHROPIC_API_KEY. */
  apiKey?: string;
  /** ANTHROPIC_BASE_URL (without `/v1`); default: Anthropic's API. */
  baseUrl?: string;
  /** `--model`; default: Claude Code's own choice. */
  model?: string;
}

/** Session ids are UUIDs; anything else is not passed to the shell or the CLI. */
const SESSION_ID = /^[A-Za-z0-9-]{1,100}$/;

export class ClaudeCodeAgentRunner implements AgentRunner {
  readonly kind = "claude-code" as const;

  constructor(private readonly options: ClaudeCodeAgentOptions) {}

  run(turn: AgentTurn): Promise<AgentTurnResult> {
    const state = turn.agentState;
    if (!state) return Promise.resolve(misconfigured("needs a per-task state directory (agentState)"));
    if (!this.options.apiKey) return Promise.resolve(misconfigured("needs ANTHROPIC_API_KEY"));
    const resumeId = state.session && SESSION_ID.test(state.session.id) ? state.session.id : null;
    const env: Record<string, string> = {
      HOME: state.home,
      ANTHROPIC_API_KEY: this.options.apiKey,
      // Running as root (in a sandbox) is refused with bypassed permissions unless the CLI is told it is sandboxed.
      IS_SANDBOX: "1",
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      DISABLE_AUTOUPDATER: "1",
    };
    if (this.options.baseUrl) env.ANTHROPIC_BASE_URL = this.options.baseUrl;
    return runCli(turn, {
      command: this.command(turn.message, resumeId),
      env,
      secrets: [{ name: "ANTHROPIC_API_KEY", value: this.options.apiKey }],
      mapping: (output) => new ClaudeCodeEvents(output, { resumeSessionId: resumeId }),
    });
  }

  /** The shell command of one turn: picks the session, then pipes the message into the CLI. */
  command(message: string, resumeId: string | null): string {
    const args = [
      "-p",
      "--output-format",
      "stream-json",
      "--verbose",
      "--include-partial-messages",
      "--dangerously-skip-permissions",
      ...(this.options.model ? ["--model", this.options.model] : []),
    ];
    const session = [`set -- --session-id ${shellQuote(randomUUID())}`];
    if (resumeId) {
      // Transcripts live at $HOME/.claude/projects/<workspace path>/<session id>.jsonl.
      const transcript = `find "$HOME/.claude/projects" -name ${shellQuote(`${resumeId}.jsonl`)} 2>/dev/null`;
      session.push(`if [ -n "$(${transcript} | head -n 1)" ]; then set -- --resume ${shellQuote(resumeId)}; fi`);
    }
    return [
      `mkdir -p -- "$HOME"`,
      ...session,
      pipeMessageInto(message, `${shellQuote(this.options.binary)} ${args.map(shellQuote).join(" ")} "$@"`),
    ].join("\n");
  }
}

function misconfigured(why: string): AgentTurnResult {
  return { status: "FAILED", error: `the claude-code agent ${why}` };
}
