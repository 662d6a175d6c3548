/**
 * Umbra's database schema. The task row is the single source of truth for a
 * task's lifecycle: both status fields, the warm-window deadline and the
 * cleanup claim live here, so every process agrees on them and nothing is lost
 * on restart.
 *
 * Invariants of SPEC §1 that SQL can express are CHECK constraints, so a bug
 * anywhere in the server cannot write an impossible row.
 */
import {
  AGENT_KINDS,
  DELIVERY_MODES,
  DELIVERY_STATES,
  INIT_STATUSES,
  MESSAGE_ROLES,
  PULL_REQUEST_STATES,
  TASK_MODES,
  TASK_STATUSES,
  TURN_OUTCOMES,
} from "@repo/types";
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  customType,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgEnum,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

export const taskStatusEnum = pgEnum("task_status", TASK_STATUSES);
export const initStatusEnum = pgEnum("init_status", INIT_STATUSES);
export const taskModeEnum = pgEnum("task_mode", TASK_MODES);
export const messageRoleEnum = pgEnum("message_role", MESSAGE_ROLES);
export const turnOutcomeEnum = pgEnum("turn_outcome", TURN_OUTCOMES);

const timestamptz = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

export const tasks = pgTable(
  "tasks",
  {
    id: uuid("id").primaryKey(),
    title: text("title").notNull(),
    status: taskStatusEnum("status").notNull().default("INITIALIZING"),
    initStatus: initStatusEnum("init_status").notNull().default("INACTIVE"),
    mode: taskModeEnum("mode").notNull(),
    repoUrl: text("repo_url").notNull(),
    baseBranch: text("base_branch"),
    baseCommitSha: text("base_commit_sha"),
    branch: text("branch"),
    workspacePath: text("workspace_path"),
    /** The commit INDEX_REPOSITORY indexed for this task; the agent's code search reads it. */
    indexedCommitSha: text("indexed_commit_sha"),
    initializationError: text("initialization_error"),
    errorMessage: text("error_message"),
    /** How the last turn (or a failed or stopped initialization) ended; kept when the task is archived. */
    lastOutcome: turnOutcomeEnum("last_outcome"),
    /** When the warm workspace is due for cleanup (remote mode only). */
    scheduledCleanupAt: timestamptz("scheduled_cleanup_at"),
    /** Which cleanup worker holds the claim on this task, and until when. */
    cleanupClaimedBy: text("cleanup_claimed_by"),
    cleanupLeaseUntil: timestamptz("cleanup_lease_until"),
    /** Failed cleanup attempts in a row; drives the retry backoff. */
    cleanupAttempts: integer("cleanup_attempts").notNull().default(0),
    /**
     * The server process running the task's initialization or turn, and until
     * when its lease holds (it heartbeats); set only while INITIALIZING or
     * RUNNING. Another server takes the work over once the lease has run out.
     */
    ownerId: text("owner_id"),
    ownerLeaseUntil: timestamptz("owner_lease_until"),
    /** Since when the task's sandbox has not answered (it is kept, unsaved, for a grace period). */
    workspaceUnreachableSince: timestamptz("workspace_unreachable_since"),
    /**
     * The agent kind that runs this task's turns, and its model (null: the
     * agent's default). A null agent marks a task from before agents were
     * chosen per task; it runs the server's AGENT.
     */
    agent: text("agent"),
    model: text("model"),
    /** The agent CLI's session the last turn returned (AgentSession: id, usage totals); the next turn resumes it. */
    agentSession: jsonb("agent_session").$type<{
      id: string;
      usageTotals?: { inputTokens: number; outputTokens: number };
    }>(),
    /** Usage summed over the task's turns (see `turns`); cost null while no turn reported one. */
    inputTokens: bigint("input_tokens", { mode: "number" }).notNull().default(0),
    outputTokens: bigint("output_tokens", { mode: "number" }).notNull().default(0),
    costUsd: doublePrecision("cost_usd"),
    /** Bumped on every write; lets readers order snapshots of the same task. */
    version: integer("version").notNull().default(0),
    createdAt: timestamptz("created_at").notNull(),
    updatedAt: timestamptz("updated_at").notNull(),
  },
  (t) => [
    index("tasks_created_at_idx").on(t.createdAt.desc()),
    index("tasks_scheduled_cleanup_at_idx").on(t.scheduledCleanupAt).where(sql`${t.scheduledCleanupAt} IS NOT NULL`),
    index("tasks_status_idx").on(t.status),
    index("tasks_cleanup_lease_idx").on(t.cleanupLeaseUntil).where(sql`${t.cleanupClaimedBy} IS NOT NULL`),
    check(
      "tasks_archived_is_inactive",
      sql`${t.status} <> 'ARCHIVED' OR (${t.initStatus} = 'INACTIVE' AND ${t.scheduledCleanupAt} IS NULL)`,
    ),
    check(
      "tasks_cleanup_only_when_warm",
      sql`${t.scheduledCleanupAt} IS NULL OR (${t.mode} = 'remote' AND ${t.initStatus} = 'ACTIVE' AND ${t.status} IN ('COMPLETED', 'STOPPED', 'FAILED'))`,
    ),
    check("tasks_running_is_active", sql`${t.status} <> 'RUNNING' OR ${t.initStatus} = 'ACTIVE'`),
    check("tasks_claim_has_lease", sql`(${t.cleanupClaimedBy} IS NULL) = (${t.cleanupLeaseUntil} IS NULL)`),
    index("tasks_owner_lease_idx").on(t.ownerLeaseUntil).where(sql`${t.ownerId} IS NOT NULL`),
    check("tasks_owner_has_lease", sql`(${t.ownerId} IS NULL) = (${t.ownerLeaseUntil} IS NULL)`),
    check("tasks_owner_only_when_busy", sql`${t.ownerId} IS NULL OR ${t.status} IN ('INITIALIZING', 'RUNNING')`),
    check(
      "tasks_agent_kind",
      sql`${t.agent} IS NULL OR ${t.agent} IN (${sql.raw(AGENT_KINDS.map((k) => `'${k}'`).join(", "))})`,
    ),
  ],
);

/**
 * One row per agent turn that ended: which agent ran it, how it ended and
 * what it used (null where the agent does not report tokens). The task's
 * usage fields are the sums of these rows, written in the same transaction.
 */
export const turns = pgTable(
  "turns",
  {
    id: uuid("id").primaryKey(),
    taskId: uuid("task_id")
      .notNull()
      .references(() => tasks.id, { onDelete: "cascade" }),
    agent: text("agent").notNull(),
    model: text("model"),
    outcome: text("outcome").notNull(),
    inputTokens: integer("input_tokens"),
    outputTokens: integer("output_tokens"),
    costUsd: doublePrecision("cost_usd"),
    startedAt: timestamptz("started_at").notNull(),
    endedAt: timestamptz("ended_at").notNull(),
  },
  (t) => [
    index("turns_task_idx").on(t.taskId, t.startedAt),
    check("turns_outcome", sql`${t.outcome} IN ('COMPLETED', 'FAILED', 'STOPPED')`),
  ],
);

export const messages = pgTable(
  "messages",
  {
    id: uuid("id").primaryKey(),
    taskId: uuid("task_id")
      .notNull()
      .references(() => tasks.id, { onDelete: "cascade" }),
    role: messageRoleEnum("role").notNull(),
    content: text("content").notNull(),
    sequence: integer("sequence").notNull(),
    metadata: jsonb("metadata").$type<Record<string, unknown>>(),
    createdAt: timestamptz("created_at").notNull(),
  },
  (t) => [
    uniqueIndex("messages_task_sequence_idx").on(t.taskId, t.sequence),
    check("messages_sequence_positive", sql`${t.sequence} > 0`),
  ],
);

export const vmSessions = pgTable(
  "vm_sessions",
  {
    id: uuid("id").primaryKey(),
    taskId: uuid("task_id")
      .notNull()
      .references(() => tasks.id, { onDelete: "cascade" }),
    provider: text("provider").notNull(),
    externalId: text("external_id").notNull(),
    endpoint: text("endpoint"),
    /** sha256 of the per-VM sidecar token. */
    tokenHash: text("token_hash").notNull(),
    /**
     * The token itself, sealed with the server's secret box (AES-256-GCM bound
     * to `vm-token:<session id>`), so any server process sharing the key reaches
     * the sandbox. Null for sessions written before tokens were kept.
     */
    tokenSealed: text("token_sealed"),
    active: boolean("active").notNull().default(true),
    createdAt: timestamptz("created_at").notNull(),
    endedAt: timestamptz("ended_at"),
  },
  (t) => [
    uniqueIndex("vm_sessions_one_active_per_task_idx").on(t.taskId).where(sql`${t.active}`),
    check("vm_sessions_ended_when_inactive", sql`${t.active} OR ${t.endedAt} IS NOT NULL`),
  ],
);

export const taskStatusHistory = pgTable(
  "task_status_history",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    taskId: uuid("task_id")
      .notNull()
      .references(() => tasks.id, { onDelete: "cascade" }),
    field: text("field").notNull(),
    fromValue: text("from_value"),
    toValue: text("to_value").notNull(),
    at: timestamptz("at").notNull(),
    reason: text("reason"),
  },
  (t) => [
    index("task_status_history_task_idx").on(t.taskId, t.id),
    check("task_status_history_field", sql`${t.field} IN ('status', 'initStatus', 'scheduledCleanupAt')`),
  ],
);

const sqlList = (values: readonly string[]) => sql.raw(values.map((value) => `'${value}'`).join(", "));

/**
 * Where a task's work goes and how far it got (SPEC §5 `delivery`), one row
 * per task. Kept apart from `tasks`: delivery moves on its own (pushes,
 * retries, pull-request events) and never takes part in the status machine.
 */
export const taskDeliveries = pgTable(
  "task_deliveries",
  {
    taskId: uuid("task_id")
      .primaryKey()
      .references(() => tasks.id, { onDelete: "cascade" }),
    mode: text("mode", { enum: DELIVERY_MODES }).notNull(),
    state: text("state", { enum: DELIVERY_STATES }).notNull().default("pending"),
    remoteBranch: text("remote_branch"),
    pushedSha: text("pushed_sha"),
    error: text("error"),
    /** Failed pushes in a row; drives the retry backoff. */
    attempts: integer("attempts").notNull().default(0),
    /** When the next push is due after a failure (or until when a retry is claimed); null when none is. */
    nextAttemptAt: timestamptz("next_attempt_at"),
    /** The forge of the task's repository (`github`, `gitlab`) and the repository's path there, lower case. */
    forge: text("forge"),
    forgeProject: text("forge_project"),
    prNumber: integer("pr_number"),
    prUrl: text("pr_url"),
    prState: text("pr_state", { enum: PULL_REQUEST_STATES }),
    prDraft: boolean("pr_draft"),
    /** The issue the task was created from; its pull request closes it. */
    closesIssue: integer("closes_issue"),
    updatedAt: timestamptz("updated_at").notNull(),
  },
  (t) => [
    index("task_deliveries_pull_request_idx")
      .on(t.forge, t.forgeProject, t.prNumber)
      .where(sql`${t.prNumber} IS NOT NULL`),
    index("task_deliveries_next_attempt_idx").on(t.nextAttemptAt).where(sql`${t.nextAttemptAt} IS NOT NULL`),
    check("task_deliveries_mode", sql`${t.mode} IN (${sqlList(DELIVERY_MODES)})`),
    check("task_deliveries_state", sql`${t.state} IN (${sqlList(DELIVERY_STATES)})`),
    check("task_deliveries_pr_state", sql`${t.prState} IS NULL OR ${t.prState} IN (${sqlList(PULL_REQUEST_STATES)})`),
    check(
      "task_deliveries_pr_complete",
      sql`(${t.prNumber} IS NULL) = (${t.prUrl} IS NULL) AND (${t.prNumber} IS NULL) = (${t.prState} IS NULL)`,
    ),
  ],
);

/** Webhook deliveries already handled, by the id the forge gave them: a redelivery does nothing. */
export const webhookDeliveries = pgTable(
  "webhook_deliveries",
  {
    source: text("source").notNull(),
    deliveryId: text("delivery_id").notNull(),
    event: text("event").notNull(),
    receivedAt: timestamptz("received_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.source, t.deliveryId] }), index("webhook_deliveries_received_idx").on(t.receivedAt)],
);

/**
 * The rest of a long message's content, in order after `messages.content`.
 * A long output is stored as a chain of bounded segments, each grown by
 * appending, so no write ever rewrites more than one segment: appending to
 * one huge value makes Postgres rewrite all of it, and on the embedded
 * database that work blocks the server's event loop.
 */
export const messageSegments = pgTable(
  "message_segments",
  {
    messageId: uuid("message_id")
      .notNull()
      .references(() => messages.id, { onDelete: "cascade" }),
    /** 1, 2, …: segment 0 is `messages.content`. */
    position: integer("position").notNull(),
    content: text("content").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.messageId, t.position] }),
    check("message_segments_position", sql`${t.position} > 0`),
  ],
);

/**
 * Messages between server processes too large for a NOTIFY payload (8000
 * bytes): the notification carries the row id, receivers read the row. Rows
 * are deleted after a minute.
 */
export const replicaMessages = pgTable(
  "replica_messages",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    payload: text("payload").notNull(),
    createdAt: timestamptz("created_at").notNull(),
  },
  (t) => [index("replica_messages_created_at_idx").on(t.createdAt)],
);

const tsvector = customType<{ data: string }>({ dataType: () => "tsvector" });

/*
 * The full-text index (apps/server/src/repository/indexer.ts) is keyed by
 * content: a file's text is stored and indexed once per (repository, blob id)
 * in repo_index_blobs, however many commits hold it. A commit adds only its
 * list of (path, blob id) rows in repo_index_paths and one repo_index_commits
 * row: no content, so what grows with commits is that list (a path, a blob id
 * and the path's small tsvector per text file of the commit).
 */

/** One row per indexed (repository, commit): its presence means the commit's path list is complete. */
export const repoIndexCommits = pgTable(
  "repo_index_commits",
  {
    repoKey: text("repo_key").notNull(),
    commitSha: text("commit_sha").notNull(),
    fileCount: integer("file_count").notNull(),
    indexedAt: timestamptz("indexed_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.repoKey, t.commitSha] })],
);

/**
 * A text file's content, once per (repository, git blob id), shared by every
 * commit and path that has it. A large file's text is cut at line ends into
 * parts (0, 1, …), one row each, so that no one statement tokenizes more than
 * a part; part 0 is written last and its presence means the blob is complete.
 */
export const repoIndexBlobs = pgTable(
  "repo_index_blobs",
  {
    repoKey: text("repo_key").notNull(),
    blobId: text("blob_id").notNull(),
    part: integer("part").notNull().default(0),
    /** The line of the file this part's text begins on, from 1. */
    firstLine: integer("first_line").notNull().default(1),
    /** The text; null for a blob that is not text, kept so that the next commit does not read it again. */
    content: text("content"),
    contentVector: tsvector("content_vector").generatedAlwaysAs(sql`to_tsvector('simple', content)`),
  },
  (t) => [
    primaryKey({ columns: [t.repoKey, t.blobId, t.part] }),
    // A small pending list: flushing the default 4 MB one stalled an insert for ~0.5 s on the embedded database.
    index("repo_index_blobs_content_idx").using("gin", t.contentVector).with({ gin_pending_list_limit: 128 }),
  ],
);

/** A commit's text files: path → blob id. The path's own words rank above the content's (weight A). */
export const repoIndexPaths = pgTable(
  "repo_index_paths",
  {
    repoKey: text("repo_key").notNull(),
    commitSha: text("commit_sha").notNull(),
    path: text("path").notNull(),
    blobId: text("blob_id").notNull(),
    pathVector: tsvector("path_vector")
      .notNull()
      .generatedAlwaysAs(sql`setweight(to_tsvector('simple', regexp_replace(path, '[/._-]', ' ', 'g')), 'A')`),
  },
  (t) => [primaryKey({ columns: [t.repoKey, t.commitSha, t.path] })],
);

/**
 * The secrets store. `value_sealed` is the SecretBox seal of the value, bound
 * to the secret's name and scope; the plain value is never stored. One secret
 * per (name, scope); a null `repo_url` is the server-wide scope.
 */
export const secrets = pgTable(
  "secrets",
  {
    id: uuid("id").primaryKey(),
    name: text("name").notNull(),
    /** The repository the secret is for (normalized repoUrl), or null for every repository. */
    repoUrl: text("repo_url"),
    valueSealed: text("value_sealed").notNull(),
    createdAt: timestamptz("created_at").notNull(),
    updatedAt: timestamptz("updated_at").notNull(),
  },
  (t) => [unique("secrets_name_scope").on(t.name, t.repoUrl).nullsNotDistinct()],
);

/** A repository's environment: how INSTALL_DEPENDENCIES sets its workspaces up, and what its sandboxes may reach. */
export const environments = pgTable(
  "environments",
  {
    /** Normalized repoUrl. */
    repoUrl: text("repo_url").primaryKey(),
    setupScript: text("setup_script"),
    env: jsonb("env").$type<Record<string, string>>().notNull().default({}),
    /** off | allowlist | on; null = the server's SANDBOX_NETWORK. */
    network: text("network"),
    /** null = the server's SANDBOX_ALLOWED_DOMAINS. */
    allowedDomains: jsonb("allowed_domains").$type<string[]>(),
    /** Names of the secrets the agent's commands get. */
    agentSecrets: jsonb("agent_secrets").$type<string[]>().notNull().default([]),
    cache: boolean("cache").notNull().default(true),
    createdAt: timestamptz("created_at").notNull(),
    updatedAt: timestamptz("updated_at").notNull(),
  },
  (t) => [check("environments_network", sql`${t.network} IS NULL OR ${t.network} IN ('off', 'allowlist', 'on')`)],
);

export type TaskRow = typeof tasks.$inferSelect;
export type NewTaskRow = typeof tasks.$inferInsert;
export type MessageRow = typeof messages.$inferSelect;
export type TurnRow = typeof turns.$inferSelect;
export type VmSessionRow = typeof vmSessions.$inferSelect;
export type TaskStatusHistoryRow = typeof taskStatusHistory.$inferSelect;
export type SecretRow = typeof secrets.$inferSelect;
export type EnvironmentRow = typeof environments.$inferSelect;
export type TaskDeliveryRow = typeof taskDeliveries.$inferSelect;
