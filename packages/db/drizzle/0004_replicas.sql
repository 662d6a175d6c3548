CREATE TABLE "replica_messages" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "replica_messages_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"payload" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "owner_id" text;--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "owner_lease_until" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "workspace_unreachable_since" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "vm_sessions" ADD COLUMN "token_sealed" text;--> statement-breakpoint
CREATE INDEX "replica_messages_created_at_idx" ON "replica_messages" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "tasks_owner_lease_idx" ON "tasks" USING btree ("owner_lease_until") WHERE "tasks"."owner_id" IS NOT NULL;--> statement-breakpoint
ALTER TABLE "tasks" ADD CONSTRAINT "tasks_owner_has_lease" CHECK (("tasks"."owner_id" IS NULL) = ("tasks"."owner_lease_until" IS NULL));--> statement-breakpoint
ALTER TABLE "tasks" ADD CONSTRAINT "tasks_owner_only_when_busy" CHECK ("tasks"."owner_id" IS NULL OR "tasks"."status" IN ('INITIALIZING', 'RUNNING'));