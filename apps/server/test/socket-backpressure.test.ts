/**
 * A client that stops reading does not make the server queue a task's whole
 * stream for it (socket.ts, CLIENT_QUEUE_LIMIT_BYTES): with a real Socket.IO
 * server and two real clients in a task's room — one reading, one behind a
 * TCP proxy that stops forwarding, the way a stalled network or a frozen
 * browser tab behaves — 64 MiB of text chunks are streamed. The reading
 * client gets every chunk; the stalled one, once it reads again, finds that
 * chunks were skipped for it (a gap in `sequence`) but every control chunk
 * came, in order.
 */
import { createServer as createHttpServer } from "node:http";
import { connect, createServer as createTcpServer, type Server as TcpServer, type Socket as TcpSocket } from "node:net";
import type { TaskRow } from "@repo/db";
import type { StreamChunkEvent } from "@repo/types";
import { io as connectSocket, type Socket } from "socket.io-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/logger";
import { CLIENT_QUEUE_LIMIT_BYTES, createSocketServer, TaskEvents } from "../src/socket";

const TASK_ID = "0b6f7c4e-7d55-4b8e-9a51-3c1f2f1f9a10";
const CHUNK = "x".repeat(256 * 1024);
const CHUNKS = 256; // 64 MiB

/** A TCP proxy whose server-to-client direction can be frozen (it stops reading from the server). */
async function freezableProxy(port: number) {
  const upstreams = new Set<TcpSocket>();
  const sockets = new Set<TcpSocket>();
  let frozen = false;
  const server: TcpServer = createTcpServer((client) => {
    const upstream = connect(port, "127.0.0.1");
    upstreams.add(upstream);
    sockets.add(client).add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    if (frozen) upstream.pause();
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return {
    url: `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`,
    freeze() {
      frozen = true;
      for (const upstream of upstreams) upstream.pause();
    },
    thaw() {
      frozen = false;
      for (const upstream of upstreams) upstream.resume();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function joinedClient(url: string, received: StreamChunkEvent[]): Promise<Socket> {
  const socket = connectSocket(url, { transports: ["websocket"], reconnection: false, forceNew: true });
  // Only what identifies a chunk is kept: 64 MiB of text is counted, not stored.
  socket.on("stream-chunk", (event: StreamChunkEvent) =>
    received.push({ ...event, ...("text" in event ? { text: String(event.text.length) } : {}) } as StreamChunkEvent),
  );
  return new Promise((resolve, reject) => {
    socket.once("connect_error", reject);
    socket.once("connect", async () => {
      const ack = await socket.timeout(5000).emitWithAck("join-task", { taskId: TASK_ID });
      if (ack.ok) resolve(socket);
      else reject(new Error(JSON.stringify(ack)));
    });
  });
}

describe("a client that stops reading", () => {
  const http = createHttpServer();
  const now = new Date();
  const task = {
    id: TASK_ID,
    title: "t",
    status: "RUNNING",
    initStatus: "ACTIVE",
    mode: "local",
    repoUrl: "/r",
    createdAt: now,
    updatedAt: now,
  } as TaskRow;
  const io = createSocketServer(http, { tasks: { get: async () => task }, log: createLogger("silent") });
  const events = new TaskEvents(io);
  let proxy: Awaited<ReturnType<typeof freezableProxy>>;

  beforeAll(async () => {
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    const address = http.address();
    proxy = await freezableProxy(typeof address === "object" && address ? address.port : 0);
  });
  afterAll(async () => {
    io.close();
    await proxy.close();
  });

  it("has its text chunks skipped beyond the limit while a reading client gets them all", async () => {
    const url = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
    const reading: StreamChunkEvent[] = [];
    const stalled: StreamChunkEvent[] = [];
    const readingClient = await joinedClient(url, reading);
    const stalledClient = await joinedClient(proxy.url, stalled);
    proxy.freeze();

    events.streamChunk(TASK_ID, { type: "message-start", messageId: "m", role: "tool" });
    for (let i = 0; i < CHUNKS; i++) {
      events.streamChunk(TASK_ID, { type: "stdout", messageId: "m", text: CHUNK });
      // A turn streams at most 1 MiB per batch; the reading client reads each batch before the next.
      if (i % 4 === 3) await waitUntil(() => reading.length === i + 2);
    }
    events.streamChunk(TASK_ID, { type: "message-end", messageId: "m" });
    events.streamChunk(TASK_ID, { type: "turn-end", status: "COMPLETED" });

    const sawTurnEnd = (list: StreamChunkEvent[]) => list.some((e) => e.type === "turn-end");
    await waitUntil(() => sawTurnEnd(reading));
    proxy.thaw();
    await waitUntil(() => sawTurnEnd(stalled));

    const texts = (list: StreamChunkEvent[]) => list.filter((e) => e.type === "stdout");
    expect(texts(reading)).toHaveLength(CHUNKS);
    expect(reading.map((e) => e.sequence)).toEqual(reading.map((_, i) => i + 1));

    // The stalled client got at most what the kernel's socket buffers held plus the limit, far from all of it.
    const stalledBytes = texts(stalled).length * CHUNK.length;
    expect(stalledBytes).toBeLessThan(CHUNKS * CHUNK.length - 16 * 1024 * 1024);
    expect(stalledBytes).toBeGreaterThanOrEqual(CLIENT_QUEUE_LIMIT_BYTES / 2);
    const sequences = stalled.map((e) => e.sequence);
    expect(sequences).toEqual([...sequences].sort((a, b) => a - b));
    expect(stalled.map((e) => e.type).filter((type) => type !== "stdout")).toEqual([
      "message-start",
      "message-end",
      "turn-end",
    ]);
    expect(stalled.at(-1)?.sequence).toBe(CHUNKS + 3);

    readingClient.close();
    stalledClient.close();
  }, 60_000);
});

/** Waits for something a real socket delivers. */
async function waitUntil(condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
