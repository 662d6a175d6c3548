/**
 * Picks the AgentRunner from configuration: `llm` (a model is configured),
 * `command` (AGENT_COMMAND) or `shell` (the offline default).
 */
import type { ServerConfig } from "../config";
import { CommandAgentRunner, ShellAgentRunner } from "./command-agent";
import { LlmAgentRunner } from "./llm-agent";
import { createLlmModel } from "./llm-model";
import type { AgentRunner } from "./types";

export function createAgentRunner(config: Pick<ServerConfig, "agent" | "llm" | "agentCommand">): AgentRunner {
  switch (config.agent) {
    case "llm":
      if (!config.llm) throw new Error("AGENT=llm needs a model (LLM_MODEL)");
      return new LlmAgentRunner({ model: createLlmModel(config.llm) });
    case "command":
      if (!config.agentCommand) throw new Error("AGENT=command needs AGENT_COMMAND");
      return new CommandAgentRunner(config.agentCommand);
    case "shell":
      return new ShellAgentRunner();
  }
}
