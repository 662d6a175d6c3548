/**
 * Umbra's database schema. The task row is the single source of truth for a
 * task's lifecycle: both status fields, the warm-window deadline and the
 * cleanup claim live here, so every process agrees on them and nothing is lost
 * on restart.
 *
 * Invariants of SPEC §1 that SQL can express are CHECK constraints, so a bug
 * anywhere in the server cannot write an impossible row.
 */
import { INIT_STATUSES, MESSAGE_ROLES, TASK_MODES, TASK_STATUSES, TURN_OUTCOMES } from "@repo/types";
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  customType,
  index,
  integer,
  jsonb,
  pgEnum,
  pgTable,
  primaryKey,
  text,
  timestamp,
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

/** One row per indexed (repository, commit): its presence means the commit is fully indexed. */
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

export const repoIndexFiles = pgTable(
  "repo_index_files",
  {
    repoKey: text("repo_key").notNull(),
    commitSha: text("commit_sha").notNull(),
    path: text("path").notNull(),
    content: text("content").notNull(),
    searchVector: tsvector("search_vector")
      .notNull()
      .generatedAlwaysAs(
        sql`setweight(to_tsvector('simple', regexp_replace(path, '[/._-]', ' ', 'g')), 'A') || to_tsvector('simple', content)`,
      ),
  },
  (t) => [
    primaryKey({ columns: [t.repoKey, t.commitSha, t.path] }),
    index("repo_index_files_search_idx").using("gin", t.searchVector),
  ],
);

export type TaskRow = typeof tasks.$inferSelect;
export type NewTaskRow = typeof tasks.$inferInsert;
export type MessageRow = typeof messages.$inferSelect;
export type VmSessionRow = typeof vmSessions.$inferSelect;
export type TaskStatusHistoryRow = typeof taskStatusHistory.$inferSelect;
