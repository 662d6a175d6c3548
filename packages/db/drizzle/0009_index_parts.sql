-- A large file's text is stored in parts. Rows already there become part 0 holding the whole text, which stays valid.
ALTER TABLE "repo_index_blobs" ADD COLUMN "part" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "repo_index_blobs" ADD COLUMN "first_line" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "repo_index_blobs" DROP CONSTRAINT "repo_index_blobs_repo_key_blob_id_pk";--> statement-breakpoint
ALTER TABLE "repo_index_blobs" ADD CONSTRAINT "repo_index_blobs_repo_key_blob_id_part_pk" PRIMARY KEY("repo_key","blob_id","part");
