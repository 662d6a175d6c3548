/**
 * The two status enums. `TaskStatus` is what the user sees; `InitStatus` is the
 * state of the task's workspace infrastructure. They are never mixed.
 *
 * Values are declared once here; the database package builds its Postgres
 * enums from these arrays, so the two can never drift apart.
 */

export const TASK_STATUSES = ["INITIALIZING", "RUNNING", "STOPPED", "COMPLETED", "FAILED", "ARCHIVED"] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];
export const TaskStatus = Object.freeze(
  Object.fromEntries(TASK_STATUSES.map((s) => [s, s])) as { [K in TaskStatus]: K },
);

export const INIT_STATUSES = [
  "INACTIVE",
  "PREPARE_WORKSPACE",
  "CREATE_VM",
  "WAIT_VM_READY",
  "VERIFY_VM_WORKSPACE",
  "INDEX_REPOSITORY",
  "ACTIVE",
] as const;
export type InitStatus = (typeof INIT_STATUSES)[number];
export const InitStatus = Object.freeze(
  Object.fromEntries(INIT_STATUSES.map((s) => [s, s])) as { [K in InitStatus]: K },
);

/** How a run ended: the last turn, or an initialization that failed or was stopped. */
export const TURN_OUTCOMES = ["COMPLETED", "FAILED", "STOPPED"] as const;
export type TurnOutcome = (typeof TURN_OUTCOMES)[number];

export const TASK_MODES = ["local", "remote"] as const;
export type TaskMode = (typeof TASK_MODES)[number];

export const MESSAGE_ROLES = ["user", "assistant", "tool", "system"] as const;
export type MessageRole = (typeof MESSAGE_ROLES)[number];

export const AGENT_KINDS = ["llm", "claude-code", "codex", "command", "shell"] as const;
export type AgentKind = (typeof AGENT_KINDS)[number];
