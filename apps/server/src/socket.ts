/**
 * Socket.IO (SPEC §6): a room per task. Clients `join-task` (acknowledged
 * with the task) and `leave-task`; the server sends `task-status-update`,
 * `init-progress` and `stream-chunk` to the task's room. Every event leaves
 * through TaskEvents, the one place that emits.
 *
 * A client that reads slower than a task streams does not make the server
 * buffer without end: text chunks are skipped for a client with more than
 * CLIENT_QUEUE_LIMIT_BYTES of them not yet handed to its connection (its
 * `sequence` numbers then show a gap; `message-end` still comes, and the
 * message's stored copy is whole). Control chunks always go. The handshake
 * is refused for a foreign Host or Origin (security/request-origin.ts).
 */
import type { Server as HttpServer, IncomingHttpHeaders } from "node:http";
import type { TaskRow } from "@repo/db";
import {
  type ClientToServerEvents,
  type InitializationProgress,
  type JoinTaskAck,
  JoinTaskPayloadSchema,
  type ServerToClientEvents,
  type StreamChunk,
  TaskIdSchema,
} from "@repo/types";
import { Server } from "socket.io";
import { AppError } from "./errors";
import type { Logger } from "./logger";
import { toTaskDto } from "./routes/dto";
import { scrubCredentials } from "./security/credentials";
import type { TaskRepository } from "./services/task-repository";
import { tokenMatches } from "./utils/auth";

export type UmbraSocketServer = Server<ClientToServerEvents, ServerToClientEvents>;

const room = (taskId: string) => `task:${taskId}`;

/** Stream text queued for one client beyond which its text chunks are skipped until it catches up, in bytes. */
export const CLIENT_QUEUE_LIMIT_BYTES = 8 * 1024 * 1024;

export class TaskEvents {
  private readonly chunkSequence = new Map<string, number>();
  /** Per local socket: stream text emitted since its connection last took its whole write buffer. */
  private readonly queued = new Map<string, number>();

  constructor(private readonly io: UmbraSocketServer) {
    io.on("connection", (socket) => {
      // engine.io's "drain": the write buffer went to the transport.
      socket.conn.on("drain", () => this.queued.delete(socket.id));
      socket.on("disconnect", () => this.queued.delete(socket.id));
    });
  }

  statusChanged(task: TaskRow, at: Date): void {
    this.io.to(room(task.id)).emit("task-status-update", {
      taskId: task.id,
      status: task.status,
      initStatus: task.initStatus,
      scheduledCleanupAt: task.scheduledCleanupAt?.toISOString() ?? null,
      errorMessage: task.errorMessage && scrubCredentials(task.errorMessage),
      initializationError: task.initializationError && scrubCredentials(task.initializationError),
      timestamp: at.toISOString(),
    });
  }

  initProgress(taskId: string, progress: InitializationProgress): void {
    this.io.to(room(taskId)).emit("init-progress", { taskId, ...progress });
  }

  streamChunk(taskId: string, chunk: StreamChunk): void {
    const sequence = (this.chunkSequence.get(taskId) ?? 0) + 1;
    this.chunkSequence.set(taskId, sequence);
    if (chunk.type === "turn-end") this.chunkSequence.delete(taskId);
    const event = { taskId, sequence, ...chunk };
    if (!("text" in chunk)) {
      this.io.to(room(taskId)).emit("stream-chunk", event);
      return;
    }
    const lagging = this.laggingClients(room(taskId), Buffer.byteLength(chunk.text));
    const target = this.io.to(room(taskId));
    (lagging.length > 0 ? target.except(lagging) : target).emit("stream-chunk", event);
  }

  /** Local clients of `name` that cannot take `size` more bytes; the others are charged for them. */
  private laggingClients(name: string, size: number): string[] {
    const lagging: string[] = [];
    for (const id of this.io.sockets.adapter.rooms.get(name) ?? []) {
      const queued = this.queued.get(id) ?? 0;
      if (queued + size > CLIENT_QUEUE_LIMIT_BYTES) lagging.push(id);
      else this.queued.set(id, queued + size);
    }
    return lagging;
  }
}

export interface SocketDeps {
  apiToken?: string;
  /** Why a handshake with these headers is refused, or null (the Host/Origin allow-list). */
  refusal?: (headers: IncomingHttpHeaders) => string | null;
  tasks: Pick<TaskRepository, "get">;
  log: Logger;
}

export function createSocketServer(http: HttpServer, deps: SocketDeps): UmbraSocketServer {
  const io: UmbraSocketServer = new Server(http, {
    path: "/socket.io",
    serveClient: false,
    cors: { origin: false },
    allowRequest: (request, callback) => {
      const refusal = deps.refusal?.(request.headers) ?? null;
      callback(refusal, refusal === null);
    },
  });
  if (deps.apiToken) {
    const expected = deps.apiToken;
    io.use((socket, next) => {
      const token = socket.handshake.auth?.token;
      if (typeof token === "string" && tokenMatches(token, expected)) return next();
      next(
        Object.assign(new Error("UNAUTHORIZED"), {
          data: { code: "UNAUTHORIZED", message: "missing or invalid token" },
        }),
      );
    });
  }
  io.on("connection", (socket) => {
    // Arguments are what the client sent: the acknowledgement is the last one, whatever came before it.
    socket.on("join-task", async (...args: unknown[]) => {
      const [payload, reply] = payloadAndAck<JoinTaskAck>(args);
      const parsed = JoinTaskPayloadSchema.safeParse(payload);
      if (!parsed.success || !TaskIdSchema.safeParse(parsed.data.taskId).success) {
        reply({ ok: false, error: { code: "VALIDATION_ERROR", message: "join-task needs {taskId: <uuid>}" } });
        return;
      }
      try {
        const task = await deps.tasks.get(parsed.data.taskId);
        await socket.join(room(task.id));
        reply({ ok: true, task: toTaskDto(task) });
      } catch (error) {
        if (error instanceof AppError) {
          reply({ ok: false, error: { code: error.code, message: error.message } });
        } else {
          deps.log.error({ err: error }, "socket.join.failed");
          reply({ ok: false, error: { code: "INTERNAL", message: "internal error" } });
        }
      }
    });
    socket.on("leave-task", async (...args: unknown[]) => {
      const [payload, reply] = payloadAndAck<{ ok: boolean }>(args);
      const parsed = JoinTaskPayloadSchema.safeParse(payload);
      if (!parsed.success) {
        reply({ ok: false });
        return;
      }
      await socket.leave(room(parsed.data.taskId));
      reply({ ok: true });
    });
  });
  return io;
}

/**
 * The payload (the first argument unless it is the callback) and the
 * acknowledgement callback (the last argument when it is a function; a no-op
 * otherwise). A client that sends no payload, or extra arguments, still gets
 * its answer instead of waiting forever.
 */
function payloadAndAck<Reply>(args: unknown[]): [unknown, (reply: Reply) => void] {
  const last = args.at(-1);
  const ack = typeof last === "function" ? (last as (reply: Reply) => void) : () => {};
  const payload = typeof args[0] === "function" ? undefined : args[0];
  return [payload, ack];
}
