CREATE TABLE "repo_index_blobs" (
	"repo_key" text NOT NULL,
	"blob_id" text NOT NULL,
	"content" text,
	"content_vector" "tsvector" GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
	CONSTRAINT "repo_index_blobs_repo_key_blob_id_pk" PRIMARY KEY("repo_key","blob_id")
);
--> statement-breakpoint
CREATE TABLE "repo_index_paths" (
	"repo_key" text NOT NULL,
	"commit_sha" text NOT NULL,
	"path" text NOT NULL,
	"blob_id" text NOT NULL,
	"path_vector" "tsvector" GENERATED ALWAYS AS (setweight(to_tsvector('simple', regexp_replace(path, '[/._-]', ' ', 'g')), 'A')) STORED NOT NULL,
	CONSTRAINT "repo_index_paths_repo_key_commit_sha_path_pk" PRIMARY KEY("repo_key","commit_sha","path")
);
--> statement-breakpoint
DROP TABLE "repo_index_files" CASCADE;--> statement-breakpoint
CREATE INDEX "repo_index_blobs_content_idx" ON "repo_index_blobs" USING gin ("content_vector") WITH (gin_pending_list_limit=128);--> statement-breakpoint
-- The index is a cache: commits indexed in the old layout are indexed again on next use.
DELETE FROM "repo_index_commits";