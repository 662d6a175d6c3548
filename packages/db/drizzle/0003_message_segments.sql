CREATE TABLE "message_segments" (
	"message_id" uuid NOT NULL,
	"position" integer NOT NULL,
	"content" text NOT NULL,
	CONSTRAINT "message_segments_message_id_position_pk" PRIMARY KEY("message_id","position"),
	CONSTRAINT "message_segments_position" CHECK ("message_segments"."position" > 0)
);
--> statement-breakpoint
ALTER TABLE "message_segments" ADD CONSTRAINT "message_segments_message_id_messages_id_fk" FOREIGN KEY ("message_id") REFERENCES "public"."messages"("id") ON DELETE cascade ON UPDATE no action;