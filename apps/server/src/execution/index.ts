/**
 * Picks the WorkspaceManager for AGENT_MODE (`firecracker` is accepted as an
 * alias of `remote` by the configuration): local directories, or per-task
 * sandboxes from the configured VM provider.
 */
import { join } from "node:path";
import type { ServerConfig } from "../config";
import { LocalWorkspaceManager } from "./local/local-workspace-manager";
import type { WorkspaceManager, WorkspaceManagerDeps } from "./types";

/** The agent mode of the running server. */
export function getAgentMode(config: Pick<ServerConfig, "mode">): "local" | "remote" {
  return config.mode;
}

export async function createWorkspaceManager(
  config: ServerConfig,
  deps: WorkspaceManagerDeps,
): Promise<WorkspaceManager> {
  if (getAgentMode(config) === "local") {
    return new LocalWorkspaceManager(deps.store, join(config.dataDir, "workspaces"), deps.agentState, deps.log);
  }
  const { createRemoteWorkspaceManager } = await import("./remote/index");
  return createRemoteWorkspaceManager(config, deps);
}
