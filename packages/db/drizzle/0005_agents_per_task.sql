CREATE TABLE "turns" (
	"id" uuid PRIMARY KEY NOT NULL,
	"task_id" uuid NOT NULL,
	"agent" text NOT NULL,
	"model" text,
	"outcome" text NOT NULL,
	"input_tokens" integer,
	"output_tokens" integer,
	"cost_usd" double precision,
	"started_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone NOT NULL,
	CONSTRAINT "turns_outcome" CHECK ("turns"."outcome" IN ('COMPLETED', 'FAILED', 'STOPPED'))
);
--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "agent" text;--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "model" text;--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "agent_session" jsonb;--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "input_tokens" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "output_tokens" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "cost_usd" double precision;--> statement-breakpoint
ALTER TABLE "turns" ADD CONSTRAINT "turns_task_id_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."tasks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "turns_task_idx" ON "turns" USING btree ("task_id","started_at");--> statement-breakpoint
ALTER TABLE "tasks" ADD CONSTRAINT "tasks_agent_kind" CHECK ("tasks"."agent" IS NULL OR "tasks"."agent" IN ('llm', 'claude-code', 'codex', 'command', 'shell'));