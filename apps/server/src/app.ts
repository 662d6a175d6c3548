/**
 * Builds the Umbra server: Fastify and Socket.IO on one port, wired to the
 * lifecycle services. Everything with a side effect outside the process —
 * the database, the clock, the workspace manager, the agent — can be
 * injected, which is how the tests drive it.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import { type Database, openDatabase, type TaskRow } from "@repo/db";
import { getStepsForMode } from "@repo/types";
import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import { createAgentRunner } from "./agent";
import type { AgentRunner } from "./agent/types";
import type { ServerConfig } from "./config";
import { AppError, NotFoundError, UnauthorizedError } from "./errors";
import { createWorkspaceManager } from "./execution";
import type { WorkspaceManager } from "./execution/types";
import { TaskInitializationEngine } from "./initialization";
import { createLogger, type Logger } from "./logger";
import { Metrics } from "./metrics";
import { RepositoryIndexer } from "./repository/indexer";
import { RepositoryStore } from "./repository/repository-store";
import { registerTaskRoutes } from "./routes/tasks";
import { MessageLog } from "./services/message-log";
import { TaskCleanupService } from "./services/task-cleanup";
import { TaskLifecycle } from "./services/task-lifecycle";
import { TaskRecovery } from "./services/task-recovery";
import { TurnRunner } from "./services/turn-runner";
import { WorkspaceTeardown } from "./services/workspace-teardown";
import { createSocketServer, TaskEvents, type UmbraSocketServer } from "./socket";
import { tokenMatches } from "./utils/auth";
import { type Clock, systemClock } from "./utils/clock";
import { createTaskStatusStore, type TaskChange, type TaskStatusStore } from "./utils/task-status";

const WEB_DIST = fileURLToPath(new URL("../../web/dist", import.meta.url));

export interface UmbraServerOptions {
  config: ServerConfig;
  /** An open database; by default one is opened from the config (and closed with the server). */
  database?: Database;
  clock?: Clock;
  logger?: Logger;
  workspaces?: WorkspaceManager;
  agent?: AgentRunner;
}

export interface UmbraServer {
  fastify: FastifyInstance;
  io: UmbraSocketServer;
  config: ServerConfig;
  database: Database;
  status: TaskStatusStore;
  lifecycle: TaskLifecycle;
  cleanup: TaskCleanupService | null;
  recovery: TaskRecovery;
  workspaces: WorkspaceManager;
  /** Base URL once listening, e.g. http://127.0.0.1:3000. */
  url: string;
  listen(): Promise<string>;
  /** Graceful stop: no new requests, running turns end STOPPED, database closed. */
  close(reason?: string): Promise<void>;
}

export async function createUmbraServer(options: UmbraServerOptions): Promise<UmbraServer> {
  const { config } = options;
  const log = options.logger ?? createLogger(config.logLevel);
  const clock = options.clock ?? systemClock;
  const ownsDatabase = !options.database;
  const database =
    options.database ??
    (await openDatabase({
      databaseUrl: config.databaseUrl,
      dataDir: config.dataDir,
      onPoolError: (error) => log.warn({ err: error }, "db.pool.error"),
    }));
  const { db } = database;

  const fastify = Fastify({
    // Request logs only at warn and above; lifecycle events carry the useful detail.
    loggerInstance: log.child({ component: "http" }, { level: "warn" }),
  }) as unknown as FastifyInstance;
  const io = createSocketServer(fastify.server, {
    apiToken: config.apiToken,
    loadTask: (id) => lifecycle.get(id),
    log,
  });
  const events = new TaskEvents(io);
  const listeners = new Set<(change: TaskChange) => void>();
  const status = createTaskStatusStore({
    db,
    clock,
    onChange: (change) => {
      events.statusChanged(change.task, change.at);
      for (const listener of listeners) listener(change);
    },
  });
  const subscribe = (listener: (change: TaskChange) => void) => {
    listeners.add(listener);
    return () => listeners.delete(listener);
  };
  const metrics = new Metrics();
  const store = new RepositoryStore(join(config.dataDir, "repos"));
  const indexer = new RepositoryIndexer(db, store, clock);
  const workspaces =
    options.workspaces ??
    (await createWorkspaceManager(config, { db, clock, store, log: log.child({ component: "workspace" }) }));
  const agent = options.agent ?? createAgentRunner(config);
  const messages = new MessageLog({ db, clock, emitChunk: (taskId, chunk) => events.streamChunk(taskId, chunk) });
  const loadTask = (id: string): Promise<TaskRow> => lifecycle.get(id);
  const engine = new TaskInitializationEngine({
    status,
    workspaces,
    indexer,
    store,
    loadTask,
    onProgress: (taskId, progress) => events.initProgress(taskId, progress),
    log: log.child({ component: "init" }),
  });
  const turns = new TurnRunner({
    status,
    workspaces,
    agent,
    messages,
    indexer,
    clock,
    cleanupDelayMs: config.cleanupDelayMs,
    emitTurnEnd: (taskId, final, error) => {
      metrics.increment("umbra_turns_total", "Agent turns finished.");
      events.streamChunk(taskId, { type: "turn-end", status: final, error });
    },
    log: log.child({ component: "turn" }),
  });
  const teardown = new WorkspaceTeardown({ status, workspaces, loadTask, subscribe, log });
  const lifecycle = new TaskLifecycle({ db, status, engine, turns, messages, workspaces, teardown, store, log });
  const cleanup =
    workspaces.mode === "remote"
      ? new TaskCleanupService({
          clock,
          loadTask,
          status,
          teardown,
          intervalMs: config.cleanupIntervalMs,
          subscribe,
          log: log.child({ component: "cleanup" }),
          onCleaned: () => metrics.increment("umbra_cleanups_total", "Warm workspaces cleaned up."),
        })
      : null;

  const recovery = new TaskRecovery({
    db,
    clock,
    status,
    workspaces,
    provider: workspaces.vmProvider ?? null,
    messages,
    restart: (taskId, message) => lifecycle.resume(taskId, message),
    isActive: (taskId) => lifecycle.isActive(taskId),
    log: log.child({ component: "recovery" }),
    intervalMs: config.healthCheckIntervalMs,
  });

  installHttpBasics(fastify, config);
  registerTaskRoutes(fastify, { lifecycle, messages, store });
  fastify.get("/api/health", async () => ({ ok: true }));
  fastify.get("/api/config", async () => ({
    mode: workspaces.mode,
    steps: getStepsForMode(workspaces.mode),
    cleanupDelayMs: config.cleanupDelayMs,
    agent: agent.kind,
  }));
  fastify.get("/metrics", async (_request, reply) =>
    reply.type("text/plain; version=0.0.4").send(await metrics.render(db)),
  );
  await serveWebApp(fastify);

  let closing: Promise<void> | null = null;
  const server: UmbraServer = {
    fastify,
    io,
    config,
    database,
    status,
    lifecycle,
    cleanup,
    recovery,
    workspaces,
    url: "",
    async listen() {
      await recovery.recoverAtStartup();
      await fastify.listen({ port: config.port, host: config.host });
      const address = fastify.server.address();
      const port = typeof address === "object" && address ? address.port : config.port;
      server.url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
      cleanup?.start();
      recovery.start();
      log.info({ url: server.url, mode: workspaces.mode, agent: agent.kind }, "server.listening");
      return server.url;
    },
    close(reason = "server shutting down") {
      closing ??= (async () => {
        log.info({ reason }, "server.closing");
        await recovery.stop();
        await cleanup?.stop();
        await lifecycle.shutdown(reason);
        io.close();
        await fastify.close();
        await workspaces.close?.();
        if (ownsDatabase) await database.close();
        log.info("server.closed");
      })();
      return closing;
    },
  };
  return server;
}

/** Auth, the error shape, and JSON-only 404s under /api. */
function installHttpBasics(fastify: FastifyInstance, config: ServerConfig): void {
  if (config.apiToken) {
    const expected = config.apiToken;
    fastify.addHook("onRequest", async (request) => {
      if (!request.url.startsWith("/api") && !request.url.startsWith("/metrics")) return;
      const header = request.headers.authorization ?? "";
      const token = header.startsWith("Bearer ") ? header.slice(7) : "";
      if (!token || !tokenMatches(token, expected)) throw new UnauthorizedError();
    });
  }
  fastify.setErrorHandler((error: FastifyError | AppError, request, reply) => {
    if (error instanceof AppError) {
      return reply.code(error.httpStatus).send({ error: { code: error.code, message: error.message } });
    }
    const statusCode = (error as FastifyError).statusCode ?? 500;
    if (statusCode >= 400 && statusCode < 500) {
      const code = statusCode === 404 ? "NOT_FOUND" : "VALIDATION_ERROR";
      return reply.code(statusCode === 404 ? 404 : 400).send({ error: { code, message: error.message } });
    }
    request.log.error({ err: error, url: request.url }, "http.internal_error");
    return reply.code(500).send({ error: { code: "INTERNAL", message: "internal error" } });
  });
}

async function serveWebApp(fastify: FastifyInstance): Promise<void> {
  const hasWeb = existsSync(join(WEB_DIST, "index.html"));
  if (hasWeb) await fastify.register(fastifyStatic, { root: WEB_DIST, wildcard: false });
  fastify.setNotFoundHandler((request, reply) => {
    const apiLike =
      request.url.startsWith("/api") || request.url.startsWith("/socket.io") || request.url === "/metrics";
    if (!apiLike && hasWeb && request.method === "GET") return reply.sendFile("index.html");
    const error = new NotFoundError("route", `${request.method} ${request.url.split("?")[0]}`);
    return reply.code(404).send({ error: { code: error.code, message: error.message } });
  });
}
