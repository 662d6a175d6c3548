/**
 * Which agent kinds can run on this server, and why not, so that the API can
 * refuse a task for an agent that cannot run (400 with the reason) instead
 * of creating a task that fails later, and the UI can offer the others.
 *
 * - `llm`: a model is configured (LLM_MODEL).
 * - `claude-code` / `codex`: the CLI's executable is there and runs
 *   (`--version`), and the vendor's key is set.
 * - `command`: AGENT_COMMAND is set. `shell`: always.
 *
 * Invariant: reasons name the environment variable to set and never contain
 * a secret value. A CLI that ran once is not probed again (its executable
 * does not change under a running server); one that failed is probed again
 * next time, so installing it later is noticed.
 */
import { AGENT_KINDS, type AgentKind } from "@repo/types";
import { type AgentCli, BINARY_VARIABLE, probeAgentCli, resolveAgentCli } from "./cli-binaries";
import type { AgentConfig } from "./index";

export interface AgentAvailability {
  kind: AgentKind;
  available: boolean;
  /** Why not, when not available. */
  reason?: string;
}

export interface AvailabilityOptions {
  /** Runs `<binary> --version`; rejects when it does not run. Default probeAgentCli. */
  probe?: (binary: string) => Promise<string>;
}

const KEY_VARIABLE: Record<AgentCli, string> = { "claude-code": "ANTHROPIC_API_KEY", codex: "OPENAI_API_KEY" };
/** Probes that succeeded or are under way, per probe function and executable. */
const runnable = new WeakMap<(binary: string) => Promise<string>, Map<string, Promise<string>>>();

export async function agentAvailability(
  config: AgentConfig,
  options: AvailabilityOptions = {},
): Promise<AgentAvailability[]> {
  const probe = options.probe ?? probeAgentCli;
  return Promise.all(
    AGENT_KINDS.map(async (kind): Promise<AgentAvailability> => {
      const problems = await problemsOf(kind, config, probe);
      return problems.length === 0
        ? { kind, available: true }
        : { kind, available: false, reason: problems.join("; ") };
    }),
  );
}

async function problemsOf(
  kind: AgentKind,
  config: AgentConfig,
  probe: (binary: string) => Promise<string>,
): Promise<string[]> {
  switch (kind) {
    case "llm":
      return config.llm ? [] : ["no model is configured (set LLM_MODEL)"];
    case "command":
      return config.agentCommand ? [] : ["no command is configured (set AGENT_COMMAND)"];
    case "shell":
      return [];
    case "claude-code":
      return cliProblems(kind, config.agentBinaries.claudeCode, config.anthropic.apiKey, probe);
    case "codex":
      return cliProblems(kind, config.agentBinaries.codex, config.openai.apiKey, probe);
  }
}

async function cliProblems(
  cli: AgentCli,
  override: string | undefined,
  apiKey: string | undefined,
  probe: (binary: string) => Promise<string>,
): Promise<string[]> {
  const problems: string[] = [];
  const resolved = resolveAgentCli(cli, override);
  if (!resolved.ok) {
    problems.push(`the ${cli} CLI is not installed: ${resolved.reason}`);
  } else {
    try {
      await probeOnce(resolved.binary.path, probe);
    } catch (error) {
      problems.push(`the ${cli} CLI does not run (${BINARY_VARIABLE[cli]}): ${(error as Error).message}`);
    }
  }
  if (!apiKey) problems.push(`no API key is configured (set ${KEY_VARIABLE[cli]})`);
  return problems;
}

function probeOnce(binary: string, probe: (binary: string) => Promise<string>): Promise<string> {
  let probes = runnable.get(probe);
  if (!probes) {
    probes = new Map();
    runnable.set(probe, probes);
  }
  let pending = probes.get(binary);
  if (!pending) {
    pending = probe(binary);
    probes.set(binary, pending);
    const forget = probes;
    pending.catch(() => forget.delete(binary));
  }
  return pending;
}
