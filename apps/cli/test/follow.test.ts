/**
 * followTask against a real Socket.IO server on loopback that plays a
 * scripted room: the room is joined half-way through a message, so that
 * message's start (and its first output) never reaches this client. It must
 * be printed whole from the persisted messages, once; a message whose start
 * streamed is printed live and not again.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { MessageDto } from "@repo/types";
import { Server } from "socket.io";
import { afterEach, describe, expect, it } from "vitest";
import { taskDto } from "../../../test/support/task-dto";
import type { Client, Task } from "../src/client";
import { followTask } from "../src/follow";
import { Renderer } from "../src/render";

const TASK_ID = "t1";
const running = taskDto({ id: TASK_ID, status: "RUNNING", updatedAt: "2030-01-01T00:00:00.000Z" }) as Task;
const completed = taskDto({ id: TASK_ID, status: "COMPLETED", updatedAt: "2030-01-01T00:00:05.000Z" }) as Task;

function message(id: string, sequence: number, content: string): MessageDto {
  return {
    id,
    taskId: TASK_ID,
    role: "tool",
    content,
    sequence,
    metadata: { kind: "command-output" },
    createdAt: "2030-01-01T00:00:01.000Z",
  } as MessageDto;
}

let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

async function scriptedRoom(play: (emit: (event: Record<string, unknown>) => void) => void): Promise<string> {
  const http = createServer();
  const io = new Server(http);
  io.on("connection", (socket) => {
    socket.on("join-task", (_payload: unknown, ack: (answer: unknown) => void) => {
      ack({ ok: true, task: running });
      let sequence = 0;
      play((event) => socket.emit("stream-chunk", { taskId: TASK_ID, sequence: ++sequence, ...event }));
    });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  close = () => new Promise<void>((resolve) => io.close(() => resolve()));
  return `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
}

describe("following a task joined half-way through a message", () => {
  it("prints the half-seen message whole at the end, and a fully streamed one once", async () => {
    const baseUrl = await scriptedRoom((emit) => {
      // m1's start was before the join: only its tail and its end arrive.
      emit({ type: "stdout", messageId: "m1", text: "tail of one\n" });
      emit({ type: "message-end", messageId: "m1" });
      emit({ type: "message-start", messageId: "m2", role: "tool" });
      emit({ type: "stdout", messageId: "m2", text: "two\n" });
      emit({ type: "message-end", messageId: "m2" });
      emit({ type: "turn-end", status: "COMPLETED" });
    });
    const client = {
      baseUrl,
      token: undefined,
      getTask: async () => completed,
      messages: async () => [
        message("u1", 1, "say something"),
        message("m1", 2, "head of one\ntail of one\n"),
        message("m2", 3, "two\n"),
      ],
    } as unknown as Client;
    let printed = "";
    const out = {
      write: (text: string) => {
        printed += text;
      },
      error: () => {},
    };
    const renderer = new Renderer(out, false);

    const task = await followTask({ client, renderer, baseline: running, afterSequence: 1 });

    expect(task.status).toBe("COMPLETED");
    expect(printed).toBe("two\nhead of one\ntail of one\n");
  });
});
