/**
 * The WorkspaceManager interface: how a task's workspace is provisioned,
 * used, saved and torn down. One implementation per mode (local directory,
 * remote sandbox); the initialization engine and the turn runner only ever
 * see this interface. `execution/index.ts` picks the implementation.
 */
import type { Db, TaskRow } from "@repo/db";
import type { InitStatus, TaskMode } from "@repo/types";
import type { ToolExecutor } from "@repo/workspace";
import type { Logger } from "../logger";
import type { RepositoryStore } from "../repository/repository-store";
import type { Clock } from "../utils/clock";
import type { SecretBox } from "../utils/secret-box";
import type { TaskFieldsPatch } from "../utils/task-status";
import type { AgentStateDirs } from "./agent-state";
import type { NetworkPolicy } from "./vm/egress/egress-policy";
import type { EgressDenial } from "./vm/egress/egress-proxy";
import type { VmProvider } from "./vm/types";

export interface StepContext {
  /** The task as it is when the step starts (fields recorded by earlier steps included). */
  task: TaskRow;
  /** Fires when the initialization is stopped; long waits must give up promptly. */
  signal: AbortSignal;
  log: Logger;
  /** A piece of the step's own output (a setup log), already redacted; shown live as `step-log` progress. */
  output(text: string): void;
  /**
   * The sandbox's egress policy from the repository's environment (CREATE_VM);
   * absent: the provider's own (SANDBOX_NETWORK / SANDBOX_ALLOWED_DOMAINS).
   */
  network?: NetworkPolicy;
}

export interface WorkspaceManager {
  readonly mode: TaskMode;
  /** Where remote sandboxes come from (remote mode only); used to find orphans and dead sandboxes. */
  readonly vmProvider?: VmProvider;
  /**
   * Runs one provisioning step of getStepsForMode(mode) other than
   * INSTALL_DEPENDENCIES and INDEX_REPOSITORY (which the engine owns).
   * Returns task fields to record.
   */
  runStep(step: InitStatus, context: StepContext): Promise<TaskFieldsPatch | undefined>;
  /**
   * The task's agent state directory (see agent-state.ts) as the
   * workspace's commands see it: the agent CLIs' HOME. Created when missing.
   */
  agentHome(task: TaskRow): Promise<string>;
  /** The tool executor of an ACTIVE task's workspace. */
  executor(task: TaskRow): Promise<ToolExecutor>;
  /**
   * The executor of a warm workspace for a follow-up, after checking that the
   * workspace still answers; null when it is gone.
   */
  attach(task: TaskRow): Promise<ToolExecutor | null>;
  /**
   * Commits everything in the workspace (tracked and untracked) to the task
   * branch and makes sure the branch is saved in the repository store, and
   * the agent's state with it where it lives inside the workspace's sandbox.
   * Returns the saved branch head.
   */
  saveWork(task: TaskRow, message: string): Promise<string>;
  /**
   * Fast-forwards the workspace's task branch to `sha`, a descendant of its
   * head already in the repository store (commits someone pushed to the
   * task's remote branch, merged in before a turn). The workspace is clean
   * then: the last turn saved it. A manager without it takes no such commits
   * into a live workspace.
   */
  fastForward?(task: TaskRow, sha: string): Promise<void>;
  /** Destroys the workspace and its resources. Idempotent. Save first. */
  teardown(task: TaskRow): Promise<void>;
  /** True when the task's workspace still exists and answers. */
  isAlive(task: TaskRow): Promise<boolean>;
  /**
   * Whether the workspace answers, is gone (nothing left to save), or is
   * silent (it exists but does not answer: it may hold unsaved work).
   * Managers without silent workspaces may leave it out (see probeWorkspace).
   */
  probe?(task: TaskRow): Promise<WorkspaceProbe>;
  /** Releases manager-level resources at shutdown (does not destroy workspaces). */
  close?(): Promise<void>;
}

export interface WorkspaceProbe {
  state: "answers" | "gone" | "silent";
  /** Why it is gone or silent. */
  detail?: string;
}

/** The manager's probe, or isAlive read as answers / gone. */
export async function probeWorkspace(workspaces: WorkspaceManager, task: TaskRow): Promise<WorkspaceProbe> {
  if (workspaces.probe) return workspaces.probe(task);
  return (await workspaces.isAlive(task)) ? { state: "answers" } : { state: "gone", detail: "the workspace is gone" };
}

/** What a workspace manager is built from (see execution/index.ts). */
export interface WorkspaceManagerDeps {
  db: Db;
  clock: Clock;
  store: RepositoryStore;
  /** Seals what must be kept secret in the database (remote sandboxes' tokens). */
  secrets: SecretBox;
  agentState: AgentStateDirs;
  /**
   * Host directories a sandbox must see, read-only at their own path, for the
   * task's agent to run (its CLI's installation). Default: none.
   */
  agentMounts?: (task: TaskRow) => string[];
  log: Logger;
  /**
   * Hears every connection a sandbox's egress proxy refused (either provider),
   * to show "blocked: <host>" on the task. Must not throw. Default: logged only.
   */
  onEgressDenied?: (denial: EgressDenial) => void;
}
