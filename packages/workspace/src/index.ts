export { AgentBoxSpec, CgroupCounter } from "./agent-box-spec";
export * from "./archive";
export { readBorrowedTips } from "./borrowed-objects";
export * from "./git";
export * from "./local-executor";
export * from "./pack-meter";
export { confinePath, resolveLexically } from "./paths";
export {
  type CommandLauncher,
  DEFAULT_PATH,
  killProcessGroup,
  minimalEnvironment,
  runInProcessGroup,
} from "./process-group";
export * from "./save-workspace";
export * from "./sidecar-client";
export type { SidecarHealth } from "./sidecar-protocol";
export * as sidecarProtocol from "./sidecar-protocol";
export {
  type FeedResult,
  runProgram,
  type StdinFeed,
  spawnHostRunning,
  startSpawnHost,
  stopSpawnHost,
} from "./spawn-host";
export { tokenMatches } from "./token";
export * from "./types";
