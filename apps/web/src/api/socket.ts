/**
 * The app's one Socket.IO connection (SPEC §6). It is created on first use,
 * reconnects by itself after a server restart, and sends the API token in the
 * handshake. Pages subscribe to task rooms through useTaskRoom.
 *
 * The connection state says "offline" only after the socket was connected
 * and lost, or after a connection attempt failed — never while the first
 * connection is still being made, so no reconnect notice flashes on load.
 */
import type {
  ClientToServerEvents,
  InitProgressEvent,
  JoinTaskAck,
  ServerToClientEvents,
  StreamChunkEvent,
  TaskStatusUpdateEvent,
} from "@repo/types";
import { useEffect, useSyncExternalStore } from "react";
import { io, type Socket } from "socket.io-client";
import { z } from "zod";
import { getToken, requireToken, subscribeAuth } from "./auth";
import { type Delivery, DeliverySchema } from "./schemas";

export type UmbraSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

const JOIN_TIMEOUT_MS = 10_000;
const JOIN_RETRY_MS = 2_000;

export type ConnectionState = "connecting" | "connected" | "offline";

let socket: UmbraSocket | null = null;
let connectionState: ConnectionState = "connecting";
const connectionListeners = new Set<() => void>();

function setConnectionState(next: ConnectionState): void {
  if (connectionState === next) return;
  connectionState = next;
  for (const listener of connectionListeners) listener();
}

function isAuthError(error: Error): boolean {
  return /unauthori[sz]ed|401|token/i.test(error.message);
}

export function getSocket(): UmbraSocket {
  if (socket) return socket;
  const created: UmbraSocket = io({
    path: "/socket.io",
    // A function, so that every reconnect sends the token current at that moment.
    auth: (callback) => {
      const token = getToken();
      callback(token ? { token } : {});
    },
  });
  created.on("connect", () => setConnectionState("connected"));
  created.on("disconnect", () => setConnectionState("offline"));
  created.on("connect_error", (error) => {
    setConnectionState("offline");
    // A refusal by the server's middleware is final until the token changes.
    if (isAuthError(error)) requireToken();
  });
  subscribeAuth(() => {
    if (getToken() && !created.connected && !created.active) created.connect();
  });
  socket = created;
  return created;
}

export function useConnectionState(): ConnectionState {
  return useSyncExternalStore(
    (listener) => {
      getSocket();
      connectionListeners.add(listener);
      return () => connectionListeners.delete(listener);
    },
    () => connectionState,
    () => "connecting",
  );
}

export interface TaskRoomHandlers {
  /**
   * The room was joined; `ack.task` is the task as the server has it now.
   * `rejoined` is true when this is a join after a reconnect, when events may have been missed.
   */
  onJoined?: (ack: JoinTaskAck, rejoined: boolean) => void;
  onStatus?: (event: TaskStatusUpdateEvent) => void;
  onInitProgress?: (event: InitProgressEvent) => void;
  onStreamChunk?: (event: StreamChunkEvent) => void;
  /** `task-delivery-update` (SPEC §6), parsed; servers without delivery never send it. */
  onDelivery?: (delivery: Delivery) => void;
}

const DeliveryEventSchema = z.object({ taskId: z.string(), delivery: DeliverySchema });

/**
 * Joins the task's room while mounted and again after every reconnect (a
 * restarted server has forgotten its rooms). Handlers are read through a ref
 * by the caller, so they may change between renders without re-joining.
 */
export function useTaskRoom(taskId: string, handlers: { current: TaskRoomHandlers }): void {
  useEffect(() => {
    const s = getSocket();
    let disposed = false;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let joins = 0;
    const join = () => {
      clearTimeout(retry);
      s.timeout(JOIN_TIMEOUT_MS)
        .emitWithAck("join-task", { taskId })
        .then((ack: JoinTaskAck) => {
          if (!disposed) handlers.current.onJoined?.(ack, joins++ > 0);
        })
        .catch(() => {
          // No answer in time. After a disconnect, "connect" joins again; otherwise retry here.
          if (!disposed && s.connected) retry = setTimeout(join, JOIN_RETRY_MS);
        });
    };
    const onStatus: ServerToClientEvents["task-status-update"] = (event) => {
      if (event.taskId === taskId) handlers.current.onStatus?.(event);
    };
    const onInit: ServerToClientEvents["init-progress"] = (event) => {
      if (event.taskId === taskId) handlers.current.onInitProgress?.(event);
    };
    const onChunk: ServerToClientEvents["stream-chunk"] = (event) => {
      if (event.taskId === taskId) handlers.current.onStreamChunk?.(event);
    };
    const onDelivery = (payload: unknown) => {
      const parsed = DeliveryEventSchema.safeParse(payload);
      if (parsed.success && parsed.data.taskId === taskId) handlers.current.onDelivery?.(parsed.data.delivery);
    };
    // Not in the shared event map yet: listened to through the untyped socket.
    const untyped = s as unknown as Socket;
    s.on("connect", join);
    untyped.on("task-delivery-update", onDelivery);
    s.on("task-status-update", onStatus);
    s.on("init-progress", onInit);
    s.on("stream-chunk", onChunk);
    if (s.connected) join();
    return () => {
      disposed = true;
      clearTimeout(retry);
      s.off("connect", join);
      s.off("task-status-update", onStatus);
      s.off("init-progress", onInit);
      s.off("stream-chunk", onChunk);
      untyped.off("task-delivery-update", onDelivery);
      if (s.connected) s.emit("leave-task", { taskId });
    };
  }, [taskId, handlers]);
}
