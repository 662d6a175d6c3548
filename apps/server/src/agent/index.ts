/**
 * Picks the AgentRunner: the kind a task asks for (default: AGENT) with the
 * model it asks for (default: the configured one).
 *
 * - `llm`: a model must be configured (LLM_MODEL); a task's model replaces its name.
 * - `claude-code` / `codex`: the CLI's executable (CLAUDE_CODE_BIN / CODEX_BIN,
 *   else the installed package's) and the vendor's key and endpoint.
 * - `command`: AGENT_COMMAND. `shell`: nothing.
 *
 * Creating a runner does no I/O beyond locating a CLI's executable; whether
 * an agent can actually run is agentAvailability()'s question. The llm
 * agent's settings are checked at once, but the AI SDK (tens of MB that a
 * server running only CLI agents never needs) is loaded on its first turn.
 */
import type { AgentKind } from "@repo/types";
import type { ServerConfig } from "../config";
import { ClaudeCodeAgentRunner } from "./claude-code-agent";
import { type AgentCli, resolveAgentCli } from "./cli-binaries";
import { CodexAgentRunner } from "./codex-agent";
import { CommandAgentRunner, ShellAgentRunner } from "./command-agent";
import { checkLlmModelConfig, type LlmModelConfig } from "./llm-config";
import type { AgentRunner } from "./types";

export type AgentConfig = Pick<
  ServerConfig,
  "agent" | "llm" | "agentCommand" | "anthropic" | "openai" | "agentBinaries"
>;

export interface AgentChoice {
  /** Default: the server's AGENT. */
  kind?: AgentKind;
  /** The task's model; default: the configured one (llm) or the CLI's own choice. */
  model?: string | null;
}

export function createAgentRunner(config: AgentConfig, choice: AgentChoice = {}): AgentRunner {
  const kind = choice.kind ?? config.agent;
  const model = choice.model ?? undefined;
  switch (kind) {
    case "llm":
      if (!config.llm) throw new Error("the llm agent needs a model (LLM_MODEL)");
      return lazyLlmRunner({ ...config.llm, model: model ?? config.llm.model });
    case "claude-code":
      return new ClaudeCodeAgentRunner({
        binary: cliBinary("claude-code", config.agentBinaries.claudeCode),
        apiKey: config.anthropic.apiKey,
        baseUrl: config.anthropic.baseUrl,
        model,
      });
    case "codex":
      return new CodexAgentRunner({
        binary: cliBinary("codex", config.agentBinaries.codex),
        apiKey: config.openai.apiKey,
        baseUrl: config.openai.baseUrl,
        model,
      });
    case "command":
      if (!config.agentCommand) throw new Error("the command agent needs AGENT_COMMAND");
      return new CommandAgentRunner(config.agentCommand);
    case "shell":
      return new ShellAgentRunner();
  }
}

/**
 * The CLI's executable. When there is none, the bare command name: the turn
 * then fails with "not found", which is what availability reports up front.
 */
function cliBinary(cli: AgentCli, override: string | undefined): string {
  const resolved = resolveAgentCli(cli, override);
  if (resolved.ok) return resolved.binary.path;
  return override ?? (cli === "claude-code" ? "claude" : "codex");
}

/** The llm agent: settings checked now, the AI SDK and the runner loaded on the first turn. */
function lazyLlmRunner(settings: LlmModelConfig): AgentRunner {
  checkLlmModelConfig(settings);
  let loaded: Promise<AgentRunner> | undefined;
  return {
    kind: "llm",
    async run(turn) {
      loaded ??= Promise.all([import("./llm-agent"), import("./llm-model")]).then(
        ([{ LlmAgentRunner }, { createLlmModel }]) => new LlmAgentRunner({ model: createLlmModel(settings) }),
      );
      return (await loaded).run(turn);
    },
  };
}
