/**
 * Follows one task until its current run is over: joins the task's Socket.IO
 * room, renders init-progress and stream-chunk events as they come, and ends
 * when the task is no longer busy and has moved past the snapshot the
 * command started from. Only messages whose start streamed in the room are
 * printed live; any other (finished before the room was joined, or joined
 * half-way) is printed whole from the persisted messages at the end, so a
 * fast task prints everything and nothing prints half. The socket reconnects
 * by itself; a re-join re-reads the task.
 */
import {
  TaskSchema as BaseTaskSchema,
  type ClientToServerEvents,
  isBusy,
  type JoinTaskAck,
  type ServerToClientEvents,
} from "@repo/types";
import { io, type Socket } from "socket.io-client";
import type { Client, Task } from "./client";
import { TaskSchema } from "./client";
import type { Renderer } from "./render";

/** The run that started with `baseline` is over in `task`. */
export function runIsOver(
  baseline: Pick<Task, "status" | "updatedAt">,
  task: Pick<Task, "status" | "updatedAt">,
): boolean {
  if (isBusy(task as Task)) return false;
  return isBusy(baseline as Task) || Date.parse(task.updatedAt) > Date.parse(baseline.updatedAt);
}

export interface FollowOptions {
  client: Client;
  renderer: Renderer;
  baseline: Task;
  /** Messages with a sequence above this are this run's (printed at the end if they did not stream). */
  afterSequence: number;
  signal?: AbortSignal;
}

export async function followTask({ client, renderer, baseline, afterSequence, signal }: FollowOptions): Promise<Task> {
  const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(client.baseUrl, {
    transports: ["websocket"],
    auth: client.token ? { token: client.token } : {},
    reconnectionDelayMax: 5_000,
  });
  const streamed = new Set<string>();
  let current = baseline;
  try {
    return await new Promise<Task>((resolve, reject) => {
      const finish = (task: Task) => {
        if (runIsOver(baseline, task)) resolve(task);
      };
      const refresh = () =>
        client.getTask(baseline.id).then((task) => {
          current = task;
          finish(task);
        }, reject);
      signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
      socket.on("connect", () => {
        socket
          .timeout(10_000)
          .emitWithAck("join-task", { taskId: baseline.id })
          .then((ack: JoinTaskAck) => {
            if (!ack.ok) return reject(new Error(ack.error.message));
            const parsed = TaskSchema.safeParse(ack.task);
            current = parsed.success ? parsed.data : { ...current, ...BaseTaskSchema.parse(ack.task) };
            finish(current);
          })
          .catch(() => void refresh());
      });
      socket.on("connect_error", (error) => {
        if (/unauthori[sz]ed|token/i.test(error.message))
          reject(new Error("the server refused the socket: set UMBRA_TOKEN"));
      });
      socket.on("init-progress", (event) => {
        if (event.taskId === baseline.id) renderer.step(event);
      });
      socket.on("stream-chunk", (event) => {
        if (event.taskId !== baseline.id) return;
        if (event.type === "turn-end") {
          renderer.chunk(event);
          return void refresh();
        }
        if (event.type === "message-start") streamed.add(event.messageId);
        if (streamed.has(event.messageId)) renderer.chunk(event);
      });
      socket.on("task-status-update", (event) => {
        if (event.taskId !== baseline.id) return;
        current = {
          ...current,
          status: event.status,
          initStatus: event.initStatus,
          errorMessage: event.errorMessage,
          initializationError: event.initializationError ?? current.initializationError,
          scheduledCleanupAt: event.scheduledCleanupAt,
          updatedAt: event.timestamp,
        };
        // A turn's final status comes before its turn-end; wait for that unless no turn ran.
        if (!isBusy(current) && current.initStatus !== "ACTIVE") finish(current);
      });
    });
  } finally {
    socket.close();
    const missed = (await client.messages(baseline.id).catch(() => [])).filter(
      (m) => m.sequence > afterSequence && m.role !== "user" && !streamed.has(m.id),
    );
    for (const message of missed) renderer.message(message);
  }
}
