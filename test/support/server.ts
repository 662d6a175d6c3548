/**
 * Starts a real Umbra server on a free loopback port for a test, with a temp
 * DATA_DIR, and gives real HTTP and Socket.IO clients for it.
 */
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import type { Database } from "@repo/db";
import type { ServerToClientEvents, TaskDto } from "@repo/types";
import { io as connect, type Socket } from "socket.io-client";
import { createUmbraServer, type UmbraServer, type UmbraServerOptions } from "../../apps/server/src/app";
import { loadConfig, type ServerConfig } from "../../apps/server/src/config";
import { UMBRA_LABELS, UMBRA_MANAGED_BY } from "../../apps/server/src/execution/vm/types";
import { createLogger } from "../../apps/server/src/logger";
import { PGLITE_TEMPLATES } from "./databases";
import { tempDir } from "./git";

export interface TestServer {
  server: UmbraServer;
  url: string;
  dataDir: string;
  api<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<ApiResponse<T>>;
  /**
   * Stops the server. Sandboxes are destroyed too (a real server leaves warm
   * ones running on purpose) unless `keepSandboxes`; then the test fails if any
   * process still refers to this server's data directory.
   */
  close(options?: { keepSandboxes?: boolean }): Promise<void>;
}

export interface ApiResponse<T> {
  status: number;
  body: T;
}

export interface StartOptions extends Omit<Partial<UmbraServerOptions>, "config"> {
  env?: Record<string, string>;
  dataDir?: string;
  database?: Database;
}

/**
 * How long a hook may take to start a server: its embedded database runs
 * initdb and the migrations first, which on a loaded machine alone takes
 * well over a minute.
 */
export const SERVER_START_MS = 180_000;

export async function startTestServer(options: StartOptions = {}): Promise<TestServer> {
  const dataDir = options.dataDir ?? tempDir("umbra-data-");
  const config: ServerConfig = loadConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    DATA_DIR: dataDir,
    AGENT: "shell",
    PGLITE_TEMPLATE_DIR: PGLITE_TEMPLATES,
    ...options.env,
  });
  const server = await createUmbraServer({
    logger: createLogger(process.env.UMBRA_TEST_LOG ?? "silent"),
    ...options,
    config,
  });
  const url = await server.listen();
  return {
    server,
    url,
    dataDir,
    async api<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
      const response = await fetch(`${url}${path}`, {
        method,
        headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
        body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      });
      const text = await response.text();
      const json = response.headers.get("content-type")?.includes("application/json");
      return { status: response.status, body: (json && text ? JSON.parse(text) : text || null) as T };
    },
    async close({ keepSandboxes = false } = {}) {
      await server.lifecycle.shutdown("test finished");
      const provider = server.workspaces.vmProvider;
      if (provider && !keepSandboxes) {
        for (const vm of await provider.list({ [UMBRA_LABELS.managedBy]: UMBRA_MANAGED_BY })) {
          await provider.destroy(vm.externalId);
        }
      }
      await server.close("test finished");
      if (!keepSandboxes) {
        const leaked = processesMentioning(dataDir);
        if (leaked.length > 0) throw new Error(`processes leaked by the test server: ${leaked.join("; ")}`);
      }
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export type RecordedEvent = {
  [K in keyof ServerToClientEvents]: { name: K; payload: Parameters<ServerToClientEvents[K]>[0] };
}[keyof ServerToClientEvents];

/** A Socket.IO client that records every server event it receives. */
export class EventRecorder {
  readonly events: RecordedEvent[] = [];
  readonly socket: Socket;
  private waiters: { test: (e: RecordedEvent) => boolean; resolve: (e: RecordedEvent) => void }[] = [];

  constructor(url: string, auth?: { token: string }) {
    this.socket = connect(url, { transports: ["websocket"], auth, reconnection: false, forceNew: true });
    for (const name of ["task-status-update", "init-progress", "stream-chunk", "task-delivery-update"] as const) {
      this.socket.on(name, (payload: unknown) => this.record({ name, payload } as RecordedEvent));
    }
  }

  async join(taskId: string): Promise<{ ok: boolean; task?: TaskDto; error?: { code: string } }> {
    if (!this.socket.connected) await new Promise<void>((resolve) => this.socket.once("connect", () => resolve()));
    return this.socket.timeout(5000).emitWithAck("join-task", { taskId });
  }

  /** Resolves with the first recorded event (past or future) that passes `test`. */
  waitFor(test: (e: RecordedEvent) => boolean, timeoutMs = 20_000): Promise<RecordedEvent> {
    const seen = this.events.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`event not seen in ${timeoutMs} ms; got ${this.describe()}`)),
        timeoutMs,
      );
      this.waiters.push({
        test,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }

  /** Waits for a task-status-update with this status (and initStatus, when given). */
  waitForStatus(status: string, initStatus?: string, timeoutMs?: number) {
    return this.waitFor(
      (e) =>
        e.name === "task-status-update" &&
        e.payload.status === status &&
        (initStatus === undefined || e.payload.initStatus === initStatus),
      timeoutMs,
    );
  }

  statusTrail(): string[] {
    return this.events
      .filter((e) => e.name === "task-status-update")
      .map((e) => (e.name === "task-status-update" ? `${e.payload.status}/${e.payload.initStatus}` : ""));
  }

  clear(): void {
    this.events.length = 0;
  }

  describe(): string {
    return JSON.stringify(
      this.events.map((e) => [
        e.name,
        (e.payload as { type?: string; status?: string }).type ?? (e.payload as { status?: string }).status,
      ]),
    );
  }

  close(): void {
    this.socket.close();
  }

  private record(event: RecordedEvent): void {
    this.events.push(event);
    this.waiters = this.waiters.filter((w) => {
      if (!w.test(event)) return true;
      w.resolve(event);
      return false;
    });
  }
}

/** Command lines of live processes that mention `text` (other than this check itself). */
export function processesMentioning(text: string): string[] {
  try {
    return execFileSync("pgrep", ["-af", "--", text], { encoding: "utf8" })
      .split("\n")
      .filter((line) => line.trim() && !line.includes("pgrep"));
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}
