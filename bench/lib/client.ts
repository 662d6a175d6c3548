/**
 * A real Socket.IO client for the benchmarks. It joins task rooms and keeps
 * every `task-status-update` it receives with two receive times: the wall
 * clock (to compare with the server's `timestamp` and deadlines) and the
 * monotonic clock (for client-side intervals such as POST → event).
 */
import type { ClientToServerEvents, JoinTaskAck, ServerToClientEvents, TaskStatusUpdateEvent } from "@repo/types";
import { io, type Socket } from "socket.io-client";

export interface ReceivedStatus {
  event: TaskStatusUpdateEvent;
  /** Date.now() when it arrived. */
  wallMs: number;
  /** performance.now() when it arrived. */
  monoMs: number;
}

type Waiter = {
  taskId: string;
  from: number;
  test: (e: TaskStatusUpdateEvent) => boolean;
  done(e: ReceivedStatus): void;
};

export class StatusClient {
  private readonly byTask = new Map<string, ReceivedStatus[]>();
  private waiters: Waiter[] = [];
  /** Every status event, of every task, in arrival order. */
  readonly all: ReceivedStatus[] = [];

  private constructor(readonly socket: Socket<ServerToClientEvents, ClientToServerEvents>) {
    socket.on("task-status-update", (event) => {
      const received = { event, wallMs: Date.now(), monoMs: performance.now() };
      this.all.push(received);
      const list = this.byTask.get(event.taskId) ?? [];
      list.push(received);
      this.byTask.set(event.taskId, list);
      const index = list.length - 1;
      this.waiters = this.waiters.filter((w) => {
        if (w.taskId !== event.taskId || index < w.from || !w.test(event)) return true;
        w.done(received);
        return false;
      });
    });
  }

  static async connect(url: string): Promise<StatusClient> {
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(url, {
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("connect_error", reject);
    });
    return new StatusClient(socket);
  }

  async join(taskId: string): Promise<JoinTaskAck> {
    const ack = (await this.socket.timeout(30_000).emitWithAck("join-task", { taskId })) as JoinTaskAck;
    if (!ack.ok) throw new Error(`join-task ${taskId} refused: ${ack.error.code}`);
    return ack;
  }

  /** Number of status events seen for the task so far; pass it as `from` to wait only for later ones. */
  count(taskId: string): number {
    return this.byTask.get(taskId)?.length ?? 0;
  }

  events(taskId: string): ReceivedStatus[] {
    return this.byTask.get(taskId) ?? [];
  }

  /** The first status event of the task at or after index `from` that passes `test`. */
  waitFor(
    taskId: string,
    test: (e: TaskStatusUpdateEvent) => boolean,
    options: { from?: number; timeoutMs?: number } = {},
  ): Promise<ReceivedStatus> {
    const from = options.from ?? 0;
    const seen = this.events(taskId)
      .slice(from)
      .find((r) => test(r.event));
    if (seen) return Promise.resolve(seen);
    const timeoutMs = options.timeoutMs ?? 120_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        const trail = this.events(taskId).map((r) => `${r.event.status}/${r.event.initStatus}`);
        reject(new Error(`task ${taskId}: awaited status not seen in ${timeoutMs} ms; saw ${trail.join(" → ")}`));
      }, timeoutMs);
      const waiter: Waiter = {
        taskId,
        from,
        test,
        done: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Waits for `status` (and `initStatus`, when given) at or after index `from`. */
  waitForStatus(
    taskId: string,
    status: string,
    options: { from?: number; initStatus?: string; timeoutMs?: number } = {},
  ) {
    return this.waitFor(
      taskId,
      (e) => e.status === status && (options.initStatus === undefined || e.initStatus === options.initStatus),
      options,
    );
  }

  close(): void {
    this.socket.close();
  }
}
