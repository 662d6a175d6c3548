CREATE TABLE "task_deliveries" (
	"task_id" uuid PRIMARY KEY NOT NULL,
	"mode" text NOT NULL,
	"state" text DEFAULT 'pending' NOT NULL,
	"remote_branch" text,
	"pushed_sha" text,
	"error" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone,
	"forge" text,
	"forge_project" text,
	"pr_number" integer,
	"pr_url" text,
	"pr_state" text,
	"pr_draft" boolean,
	"closes_issue" integer,
	"updated_at" timestamp with time zone NOT NULL,
	CONSTRAINT "task_deliveries_mode" CHECK ("task_deliveries"."mode" IN ('none', 'branch', 'pull-request')),
	CONSTRAINT "task_deliveries_state" CHECK ("task_deliveries"."state" IN ('pending', 'pushed', 'failed', 'conflict')),
	CONSTRAINT "task_deliveries_pr_state" CHECK ("task_deliveries"."pr_state" IS NULL OR "task_deliveries"."pr_state" IN ('open', 'merged', 'closed')),
	CONSTRAINT "task_deliveries_pr_complete" CHECK (("task_deliveries"."pr_number" IS NULL) = ("task_deliveries"."pr_url" IS NULL) AND ("task_deliveries"."pr_number" IS NULL) = ("task_deliveries"."pr_state" IS NULL))
);
--> statement-breakpoint
CREATE TABLE "webhook_deliveries" (
	"source" text NOT NULL,
	"delivery_id" text NOT NULL,
	"event" text NOT NULL,
	"received_at" timestamp with time zone NOT NULL,
	CONSTRAINT "webhook_deliveries_source_delivery_id_pk" PRIMARY KEY("source","delivery_id")
);
--> statement-breakpoint
ALTER TABLE "task_deliveries" ADD CONSTRAINT "task_deliveries_task_id_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."tasks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "task_deliveries_pull_request_idx" ON "task_deliveries" USING btree ("forge","forge_project","pr_number") WHERE "task_deliveries"."pr_number" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "task_deliveries_next_attempt_idx" ON "task_deliveries" USING btree ("next_attempt_at") WHERE "task_deliveries"."next_attempt_at" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "webhook_deliveries_received_idx" ON "webhook_deliveries" USING btree ("received_at");