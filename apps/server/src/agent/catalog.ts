/**
 * The agents this server offers, as the lifecycle sees them: the default
 * kind (AGENT), which kinds can run and why not, a runner for a task's
 * choice, and the host directories a sandbox must see for a kind to run
 * there.
 *
 * Invariants:
 * - A runner is made per turn from the task's own choice (kind, model); the
 *   choice is checked against availability when the task is created, so a
 *   task never fails later for an agent the server cannot run.
 * - In a sandbox that cannot see this host (kubernetes: `sandboxAgents`),
 *   the CLIs are the ones in the sandbox's image: their paths come from the
 *   provider, nothing is probed on this host, and nothing is mounted.
 */
import { AGENT_KINDS, type AgentKind } from "@repo/types";
import type { SandboxAgents } from "../execution/vm/types";
import { type AgentAvailability, type AvailabilityOptions, agentAvailability } from "./availability";
import { type AgentCli, resolveAgentCli } from "./cli-binaries";
import { type AgentConfig, createAgentRunner } from "./index";
import type { AgentRunner } from "./types";

export interface AgentChoiceOfTask {
  /** The task's agent; null = the server's default (tasks from before agents were chosen per task). */
  kind: AgentKind | null;
  /** The task's model; null = the agent's default. */
  model: string | null;
}

export interface AgentCatalog {
  /** The server's default kind (AGENT). */
  readonly defaultKind: AgentKind;
  /** Every kind, with why it cannot run where it cannot. */
  availability(): Promise<AgentAvailability[]>;
  /** A runner for one turn of a task. */
  runner(choice: AgentChoiceOfTask): AgentRunner;
  /** Host directories a sandbox on this host must see, read-only at the same path, for `kind` to run in it. */
  hostDirs(kind: AgentKind | null): string[];
}

export interface ConfiguredAgentsOptions extends AvailabilityOptions {
  /** The CLIs and the agent's HOME inside sandboxes that cannot see this host (kubernetes). */
  sandboxAgents?: SandboxAgents;
}

const CLI_OF: Partial<Record<AgentKind, { cli: AgentCli; key: "anthropic" | "openai" }>> = {
  "claude-code": { cli: "claude-code", key: "anthropic" },
  codex: { cli: "codex", key: "openai" },
};

/** The agents of the server's configuration. */
export function configuredAgents(config: AgentConfig, options: ConfiguredAgentsOptions = {}): AgentCatalog {
  const inImage = options.sandboxAgents?.binaries;
  const runnerConfig: AgentConfig = inImage ? { ...config, agentBinaries: inImage } : config;
  return {
    defaultKind: config.agent,
    async availability() {
      const found = await agentAvailability(config, options);
      return inImage ? found.map((entry) => inImageAvailability(entry, config)) : found;
    },
    runner: (choice) => createAgentRunner(runnerConfig, { kind: choice.kind ?? undefined, model: choice.model }),
    hostDirs(kind) {
      const cli = CLI_OF[kind ?? config.agent]?.cli;
      if (!cli || inImage) return [];
      const override = cli === "claude-code" ? config.agentBinaries.claudeCode : config.agentBinaries.codex;
      const resolved = resolveAgentCli(cli, override);
      return resolved.ok ? [resolved.binary.mountDir] : [];
    },
  };
}

/**
 * A server that runs one given runner for every task (an embedding, or a
 * test's scripted agent): its kind is the only one available.
 */
export function singleAgent(runner: AgentRunner): AgentCatalog {
  return {
    defaultKind: runner.kind,
    async availability() {
      return AGENT_KINDS.map((kind) =>
        kind === runner.kind
          ? { kind, available: true }
          : { kind, available: false, reason: `this server runs only the ${runner.kind} agent` },
      );
    },
    runner: () => runner,
    hostDirs: () => [],
  };
}

/** Availability when the CLIs are in the sandbox's image: only the key is this server's to check. */
function inImageAvailability(entry: AgentAvailability, config: AgentConfig): AgentAvailability {
  const cli = CLI_OF[entry.kind];
  if (!cli) return entry;
  if (config[cli.key].apiKey) return { kind: entry.kind, available: true };
  const variable = cli.key === "anthropic" ? "ANTHROPIC_API_KEY" : "OPENAI_API_KEY";
  return { kind: entry.kind, available: false, reason: `no API key is configured (set ${variable})` };
}
