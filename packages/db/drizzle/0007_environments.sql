ALTER TYPE "public"."init_status" ADD VALUE 'INSTALL_DEPENDENCIES' BEFORE 'INDEX_REPOSITORY';--> statement-breakpoint
CREATE TABLE "environments" (
	"repo_url" text PRIMARY KEY NOT NULL,
	"setup_script" text,
	"env" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"network" text,
	"allowed_domains" jsonb,
	"agent_secrets" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"cache" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	CONSTRAINT "environments_network" CHECK ("environments"."network" IS NULL OR "environments"."network" IN ('off', 'allowlist', 'on'))
);
--> statement-breakpoint
CREATE TABLE "secrets" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"repo_url" text,
	"value_sealed" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	CONSTRAINT "secrets_name_scope" UNIQUE NULLS NOT DISTINCT("name","repo_url")
);
