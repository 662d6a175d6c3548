/**
 * An Umbra server for one benchmark section: the real server (Fastify,
 * Socket.IO, PGlite by default, the real workspace manager and `shell`
 * agent), started in this process on a free loopback port through the test
 * helper, plus one Socket.IO client. Closing it destroys every sandbox it
 * created and fails if a process of it is left behind.
 *
 * The server logs at `info`, as it does in production, into a sink that
 * drops the lines (a section may look at them first): the cost of logging is
 * part of what is measured, the noise is not.
 */
import { type Database, type TaskStatusHistoryRow, taskStatusHistory } from "@repo/db";
import type { TaskDto } from "@repo/types";
import { asc, eq } from "drizzle-orm";
import { pino } from "pino";
import { startTestServer, type TestServer } from "../../test/support/server";
import { StatusClient } from "./client";

export type Mode = "local" | "remote";

export interface BenchServer {
  t: TestServer;
  client: StatusClient;
  mode: Mode;
  createTask(repoUrl: string, message: string): Promise<TaskDto>;
  followUp(taskId: string, message: string): Promise<TaskDto>;
  archive(taskId: string): Promise<TaskDto>;
  deleteTask(taskId: string): Promise<void>;
  history(taskId: string): Promise<TaskStatusHistoryRow[]>;
  close(): Promise<void>;
}

export interface BenchServerOptions {
  env?: Record<string, string>;
  /** Sees every log line (JSON) of the server. */
  onLog?(line: string): void;
  /** An open database to use instead of the embedded PGlite under the data directory; the caller closes it. */
  database?: Database;
}

export async function startBenchServer(mode: Mode, options: BenchServerOptions = {}): Promise<BenchServer> {
  const logger = pino(
    { level: "info", base: { service: "umbra-server" } },
    { write: (line: string) => options.onLog?.(line) },
  );
  const t = await startTestServer({
    env: { AGENT_MODE: mode, VM_READY_TIMEOUT_MS: "60000", ...options.env },
    logger,
    ...(options.database ? { database: options.database } : {}),
  });
  const client = await StatusClient.connect(t.url);
  const expect = async <T>(method: string, path: string, status: number, body?: unknown): Promise<T> => {
    const response = await t.api<T>(method, path, body);
    if (response.status !== status) {
      throw new Error(`${method} ${path} answered ${response.status}: ${JSON.stringify(response.body)}`);
    }
    return response.body;
  };
  return {
    t,
    client,
    mode,
    async createTask(repoUrl, message) {
      return (await expect<{ task: TaskDto }>("POST", "/api/tasks", 201, { repoUrl, message })).task;
    },
    async followUp(taskId, message) {
      return (await expect<{ task: TaskDto }>("POST", `/api/tasks/${taskId}/messages`, 202, { message })).task;
    },
    async archive(taskId) {
      return (await expect<{ task: TaskDto }>("POST", `/api/tasks/${taskId}/archive`, 200)).task;
    },
    async deleteTask(taskId) {
      await expect("DELETE", `/api/tasks/${taskId}`, 204);
    },
    history(taskId) {
      return t.server.database.db
        .select()
        .from(taskStatusHistory)
        .where(eq(taskStatusHistory.taskId, taskId))
        .orderBy(asc(taskStatusHistory.id));
    },
    async close() {
      client.close();
      await t.close();
    },
  };
}

/** Milliseconds each initialization step took, from the status-history rows of one initialization. */
export function stepDurations(history: TaskStatusHistoryRow[], sinceMs: number): Record<string, number> {
  const rows = history.filter((row) => row.field === "initStatus" && row.at.getTime() >= sinceMs - 1);
  const steps: Record<string, number> = {};
  for (let i = 0; i < rows.length - 1; i++) {
    const row = rows[i]!;
    if (row.toValue === "ACTIVE" || row.toValue === "INACTIVE") continue;
    steps[row.toValue] = rows[i + 1]!.at.getTime() - row.at.getTime();
  }
  return steps;
}

/** When (server clock, epoch ms) the workspace became ACTIVE at or after `sinceMs`. */
export function activeAt(history: TaskStatusHistoryRow[], sinceMs: number): number | null {
  const row = history.find((r) => r.field === "initStatus" && r.toValue === "ACTIVE" && r.at.getTime() >= sinceMs - 1);
  return row ? row.at.getTime() : null;
}
