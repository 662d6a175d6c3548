/**
 * The `codex` agent: the Codex CLI, non-interactive (`codex exec --json`),
 * with its approvals and its own sandbox bypassed — Umbra's workspace (a
 * sandbox in remote mode) is the boundary.
 *
 * The model endpoint: with a base URL (OPENAI_BASE_URL) the CLI gets a model
 * provider of Umbra's own through `-c` (Codex ignores OPENAI_BASE_URL) that
 * speaks the Responses API over HTTP and reads its key from OPENAI_API_KEY;
 * without one, Codex's built-in OpenAI provider, which in `exec` mode reads
 * its key from CODEX_API_KEY.
 *
 * Invariants:
 * - HOME of the CLI is the task's state directory (AgentTurn.agentState),
 *   never the workspace.
 * - A later turn resumes (`codex exec resume <id>`) the session it is given
 *   when its transcript is in HOME, and otherwise starts a new one.
 * - The key reaches the CLI only through its environment; the command line
 *   names the variable, never the value.
 */
import { pipeMessageInto, runCli } from "./cli-agent";
import { codexFeatures } from "./cli-binaries";
import { CodexEvents } from "./codex-events";
import { shellQuote } from "./command-agent";
import type { AgentRunner, AgentTurn, AgentTurnResult } from "./types";

export interface CodexAgentOptions {
  /** The `codex` executable, as seen where the workspace's commands run. */
  binary: string;
  /** OPENAI_API_KEY. */
  apiKey?: string;
  /** OPENAI_BASE_URL (with `/v1`); default: Codex's built-in OpenAI provider. */
  baseUrl?: string;
  /** `--model`; default: Codex's own choice. */
  model?: string;
  /**
   * Codex features to turn off (`--disable`) where the installed Codex knows
   * them (it refuses unknown names). Default: `plugins`, whose marketplace
   * has no business in a sandboxed workspace.
   */
  disableFeatures?: string[];
  /** The feature names the installed Codex knows. Default: asks `codex features list`, once per binary. */
  knownFeatures?: (binary: string) => Promise<Set<string>>;
}

const DEFAULT_DISABLED_FEATURES = ["plugins"];

/** Where the key is put: Umbra's provider reads OPENAI_API_KEY, the built-in one CODEX_API_KEY. */
const KEY_VARIABLES = ["OPENAI_API_KEY", "CODEX_API_KEY"];

/** The name of the model provider Umbra defines when a base URL is set. */
export const CODEX_PROVIDER = "umbra";

/** Session ids are UUIDs; anything else is not passed to the shell or the CLI. */
const SESSION_ID = /^[A-Za-z0-9-]{1,100}$/;

export class CodexAgentRunner implements AgentRunner {
  readonly kind = "codex" as const;

  constructor(private readonly options: CodexAgentOptions) {}

  async run(turn: AgentTurn): Promise<AgentTurnResult> {
    const state = turn.agentState;
    if (!state) return misconfigured("needs a per-task state directory (agentState)");
    if (!this.options.apiKey) return misconfigured("needs OPENAI_API_KEY");
    const resume = state.session && SESSION_ID.test(state.session.id) ? state.session : null;
    const keyVariable = this.options.baseUrl ? "OPENAI_API_KEY" : "CODEX_API_KEY";
    const known = await (this.options.knownFeatures ?? codexFeatures)(this.options.binary);
    const disable = (this.options.disableFeatures ?? DEFAULT_DISABLED_FEATURES).filter((name) => known.has(name));
    return runCli(turn, {
      command: this.command(turn.message, resume?.id ?? null, disable),
      env: { HOME: state.home, [keyVariable]: this.options.apiKey },
      secrets: [{ name: "OPENAI_API_KEY", value: this.options.apiKey }],
      mapping: (output) => new CodexEvents(output, { resume }),
    });
  }

  /** The shell command of one turn: picks the session, then pipes the message into the CLI. */
  command(message: string, resumeId: string | null, disableFeatures: string[] = []): string {
    const args = [
      "exec",
      "--json",
      "--dangerously-bypass-approvals-and-sandbox",
      "--skip-git-repo-check",
      ...disableFeatures.flatMap((feature) => ["--disable", feature]),
      ...(this.options.model ? ["--model", this.options.model] : []),
      // The commands Codex runs for the model do not see the key.
      "-c",
      `shell_environment_policy.exclude=${JSON.stringify(KEY_VARIABLES)}`,
      ...this.providerArgs(),
    ];
    const session = ["set --"];
    if (resumeId) {
      // Transcripts live at $HOME/.codex/sessions/<date>/rollout-<time>-<session id>.jsonl.
      const transcript = `find "$HOME/.codex/sessions" -name ${shellQuote(`rollout-*-${resumeId}.jsonl`)} 2>/dev/null`;
      session.push(`if [ -n "$(${transcript} | head -n 1)" ]; then set -- resume ${shellQuote(resumeId)}; fi`);
    }
    return [
      `mkdir -p -- "$HOME"`,
      ...session,
      // `-` reads the prompt from standard input.
      pipeMessageInto(message, `${shellQuote(this.options.binary)} ${args.map(shellQuote).join(" ")} "$@" -`),
    ].join("\n");
  }

  private providerArgs(): string[] {
    const { baseUrl } = this.options;
    if (!baseUrl) return [];
    // TOML inline table; JSON string syntax is valid TOML for these values.
    const provider = `{name=${JSON.stringify("Umbra")}, base_url=${JSON.stringify(baseUrl)}, env_key="OPENAI_API_KEY", wire_api="responses"}`;
    return [
      "-c",
      `model_provider=${JSON.stringify(CODEX_PROVIDER)}`,
      "-c",
      `model_providers.${CODEX_PROVIDER}=${provider}`,
    ];
  }
}

function misconfigured(why: string): AgentTurnResult {
  return { status: "FAILED", error: `the codex agent ${why}` };
}
