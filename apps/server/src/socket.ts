/**
 * Socket.IO (SPEC §6): a room per task. Clients `join-task` (acknowledged
 * with the task) and `leave-task`; the server sends `task-status-update`,
 * `init-progress` and `stream-chunk` to the task's room. Every event leaves
 * through TaskEvents, the one place that emits.
 */
import type { Server as HttpServer } from "node:http";
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
import type { TaskRepository } from "./services/task-repository";
import { tokenMatches } from "./utils/auth";

export type UmbraSocketServer = Server<ClientToServerEvents, ServerToClientEvents>;

const room = (taskId: string) => `task:${taskId}`;

export class TaskEvents {
  private readonly chunkSequence = new Map<string, number>();

  constructor(private readonly io: UmbraSocketServer) {}

  statusChanged(task: TaskRow, at: Date): void {
    this.io.to(room(task.id)).emit("task-status-update", {
      taskId: task.id,
      status: task.status,
      initStatus: task.initStatus,
      scheduledCleanupAt: task.scheduledCleanupAt?.toISOString() ?? null,
      errorMessage: task.errorMessage,
      initializationError: task.initializationError,
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
    this.io.to(room(taskId)).emit("stream-chunk", { taskId, sequence, ...chunk });
  }
}

export interface SocketDeps {
  apiToken?: string;
  tasks: Pick<TaskRepository, "get">;
  log: Logger;
}

export function createSocketServer(http: HttpServer, deps: SocketDeps): UmbraSocketServer {
  const io: UmbraSocketServer = new Server(http, { path: "/socket.io", serveClient: false, cors: { origin: false } });
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
