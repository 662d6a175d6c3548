CREATE TYPE "public"."turn_outcome" AS ENUM('COMPLETED', 'FAILED', 'STOPPED');--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "last_outcome" "turn_outcome";