CREATE TYPE "public"."init_status" AS ENUM('INACTIVE', 'PREPARE_WORKSPACE', 'CREATE_VM', 'WAIT_VM_READY', 'VERIFY_VM_WORKSPACE', 'INDEX_REPOSITORY', 'ACTIVE');--> statement-breakpoint
CREATE TYPE "public"."message_role" AS ENUM('user', 'assistant', 'tool', 'system');--> statement-breakpoint
CREATE TYPE "public"."task_mode" AS ENUM('local', 'remote');--> statement-breakpoint
CREATE TYPE "public"."task_status" AS ENUM('INITIALIZING', 'RUNNING', 'STOPPED', 'COMPLETED', 'FAILED', 'ARCHIVED');--> statement-breakpoint
CREATE TABLE "messages" (
	"id" uuid PRIMARY KEY NOT NULL,
	"task_id" uuid NOT NULL,
	"role" "message_role" NOT NULL,
	"content" text NOT NULL,
	"sequence" integer NOT NULL,
	"metadata" jsonb,
	"created_at" timestamp with time zone NOT NULL,
	CONSTRAINT "messages_sequence_positive" CHECK ("messages"."sequence" > 0)
);
--> statement-breakpoint
CREATE TABLE "repo_index_commits" (
	"repo_key" text NOT NULL,
	"commit_sha" text NOT NULL,
	"file_count" integer NOT NULL,
	"indexed_at" timestamp with time zone NOT NULL,
	CONSTRAINT "repo_index_commits_repo_key_commit_sha_pk" PRIMARY KEY("repo_key","commit_sha")
);
--> statement-breakpoint
CREATE TABLE "repo_index_files" (
	"repo_key" text NOT NULL,
	"commit_sha" text NOT NULL,
	"path" text NOT NULL,
	"content" text NOT NULL,
	"search_vector" "tsvector" GENERATED ALWAYS AS (setweight(to_tsvector('simple', regexp_replace(path, '[/._-]', ' ', 'g')), 'A') || to_tsvector('simple', content)) STORED NOT NULL,
	CONSTRAINT "repo_index_files_repo_key_commit_sha_path_pk" PRIMARY KEY("repo_key","commit_sha","path")
);
--> statement-breakpoint
CREATE TABLE "task_status_history" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "task_status_history_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"task_id" uuid NOT NULL,
	"field" text NOT NULL,
	"from_value" text,
	"to_value" text NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"reason" text,
	CONSTRAINT "task_status_history_field" CHECK ("task_status_history"."field" IN ('status', 'initStatus'))
);
--> statement-breakpoint
CREATE TABLE "tasks" (
	"id" uuid PRIMARY KEY NOT NULL,
	"title" text NOT NULL,
	"status" "task_status" DEFAULT 'INITIALIZING' NOT NULL,
	"init_status" "init_status" DEFAULT 'INACTIVE' NOT NULL,
	"mode" "task_mode" NOT NULL,
	"repo_url" text NOT NULL,
	"base_branch" text,
	"base_commit_sha" text,
	"branch" text,
	"workspace_path" text,
	"indexed_commit_sha" text,
	"initialization_error" text,
	"error_message" text,
	"scheduled_cleanup_at" timestamp with time zone,
	"cleanup_claimed_by" text,
	"cleanup_lease_until" timestamp with time zone,
	"cleanup_attempts" integer DEFAULT 0 NOT NULL,
	"version" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	CONSTRAINT "tasks_archived_is_inactive" CHECK ("tasks"."status" <> 'ARCHIVED' OR ("tasks"."init_status" = 'INACTIVE' AND "tasks"."scheduled_cleanup_at" IS NULL)),
	CONSTRAINT "tasks_cleanup_only_when_warm" CHECK ("tasks"."scheduled_cleanup_at" IS NULL OR ("tasks"."mode" = 'remote' AND "tasks"."init_status" = 'ACTIVE' AND "tasks"."status" IN ('COMPLETED', 'STOPPED', 'FAILED'))),
	CONSTRAINT "tasks_running_is_active" CHECK ("tasks"."status" <> 'RUNNING' OR "tasks"."init_status" = 'ACTIVE'),
	CONSTRAINT "tasks_claim_has_lease" CHECK (("tasks"."cleanup_claimed_by" IS NULL) = ("tasks"."cleanup_lease_until" IS NULL))
);
--> statement-breakpoint
CREATE TABLE "vm_sessions" (
	"id" uuid PRIMARY KEY NOT NULL,
	"task_id" uuid NOT NULL,
	"provider" text NOT NULL,
	"external_id" text NOT NULL,
	"endpoint" text,
	"token_hash" text NOT NULL,
	"active" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone,
	CONSTRAINT "vm_sessions_ended_when_inactive" CHECK ("vm_sessions"."active" OR "vm_sessions"."ended_at" IS NOT NULL)
);
--> statement-breakpoint
ALTER TABLE "messages" ADD CONSTRAINT "messages_task_id_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."tasks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "task_status_history" ADD CONSTRAINT "task_status_history_task_id_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."tasks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "vm_sessions" ADD CONSTRAINT "vm_sessions_task_id_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."tasks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "messages_task_sequence_idx" ON "messages" USING btree ("task_id","sequence");--> statement-breakpoint
CREATE INDEX "repo_index_files_search_idx" ON "repo_index_files" USING gin ("search_vector");--> statement-breakpoint
CREATE INDEX "task_status_history_task_idx" ON "task_status_history" USING btree ("task_id","id");--> statement-breakpoint
CREATE INDEX "tasks_created_at_idx" ON "tasks" USING btree ("created_at" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "tasks_scheduled_cleanup_at_idx" ON "tasks" USING btree ("scheduled_cleanup_at") WHERE "tasks"."scheduled_cleanup_at" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "tasks_status_idx" ON "tasks" USING btree ("status");--> statement-breakpoint
CREATE UNIQUE INDEX "vm_sessions_one_active_per_task_idx" ON "vm_sessions" USING btree ("task_id") WHERE "vm_sessions"."active";