/**
 * Socket.IO events (SPEC §6): payloads and the typed event maps both ends use.
 */
import { z } from "zod";
import type { TaskDto } from "../api/schemas";
import type { InitializationProgress, StreamChunk } from "../chat/streaming";
import type { TaskDeliveryUpdateEvent } from "../delivery/delivery";
import type { InitStatus, TaskStatus } from "../enums";

/** Sent on every change of `status` or `initStatus`, in the order they happened. */
export interface TaskStatusUpdateEvent {
  taskId: string;
  status: TaskStatus;
  initStatus: InitStatus;
  /** ISO time when the warm workspace will be cleaned up, or null. */
  scheduledCleanupAt: string | null;
  errorMessage: string | null;
  initializationError: string | null;
  /** ISO time of the change. */
  timestamp: string;
}

export type InitProgressEvent = InitializationProgress & { taskId: string };

export type StreamChunkEvent = StreamChunk & { taskId: string; sequence: number };

export const JoinTaskPayloadSchema = z.strictObject({ taskId: z.string() });
export type JoinTaskPayload = z.infer<typeof JoinTaskPayloadSchema>;

export type JoinTaskAck = { ok: true; task: TaskDto } | { ok: false; error: { code: string; message: string } };

export interface ServerToClientEvents {
  "task-status-update": (event: TaskStatusUpdateEvent) => void;
  "init-progress": (event: InitProgressEvent) => void;
  "stream-chunk": (event: StreamChunkEvent) => void;
  "task-delivery-update": (event: TaskDeliveryUpdateEvent) => void;
}

export interface ClientToServerEvents {
  "join-task": (payload: JoinTaskPayload, ack?: (reply: JoinTaskAck) => void) => void;
  "leave-task": (payload: JoinTaskPayload, ack?: (reply: { ok: boolean }) => void) => void;
}
