/**
 * Builds the Umbra server: Fastify and Socket.IO on one port, wired to the
 * lifecycle services. Everything with a side effect outside the process —
 * the database, the clock, the workspace manager, the agent — can be
 * injected, which is how the tests drive it.
 */
import { existsSync } from "node:fs";
import type { Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import { type Database, openDatabase } from "@repo/db";
import { getStepsForMode } from "@repo/types";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
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
import { registerRepositoryRoutes } from "./routes/repositories";
import { registerTaskRoutes } from "./routes/tasks";
import { RepoUrlPolicy, type ResolveHost } from "./security/repo-url-policy";
import { HostAllowList, installRequestOriginGuard } from "./security/request-origin";
import { MessageLog } from "./services/message-log";
import { OutputLogs } from "./services/output-log";
import { TaskCleanupService } from "./services/task-cleanup";
import { createTaskCore } from "./services/task-core";
import { TaskLifecycle } from "./services/task-lifecycle";
import { TaskRecovery } from "./services/task-recovery";
import type { TaskRepository } from "./services/task-repository";
import { TurnRunner } from "./services/turn-runner";
import { WorkspaceTeardown } from "./services/workspace-teardown";
import { createSocketServer, TaskEvents, type UmbraSocketServer } from "./socket";
import { tokenMatches } from "./utils/auth";
import { type Clock, systemClock } from "./utils/clock";
import type { TaskChanges } from "./utils/task-changes";
import type { TaskStatusStore } from "./utils/task-status";

const WEB_DIST = fileURLToPath(new URL("../../web/dist", import.meta.url));

export interface UmbraServerOptions {
  config: ServerConfig;
  /** An open database; by default one is opened from the config (and closed with the server). */
  database?: Database;
  clock?: Clock;
  logger?: Logger;
  workspaces?: WorkspaceManager;
  agent?: AgentRunner;
  /** How repository host names are resolved for the SSRF guard; default: the system resolver. */
  resolveHost?: ResolveHost;
}

export interface UmbraServer {
  fastify: FastifyInstance;
  io: UmbraSocketServer;
  config: ServerConfig;
  database: Database;
  status: TaskStatusStore;
  tasks: TaskRepository;
  changes: TaskChanges;
  lifecycle: TaskLifecycle;
  turns: TurnRunner;
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
      // Message and code only: pg attaches the whole client object to its errors.
      onPoolError: (error) =>
        log.warn({ err: { message: error.message, code: (error as { code?: string }).code } }, "db.pool.error"),
    }));
  const { db } = database;

  const fastify = Fastify({
    // Request logs only at warn and above; lifecycle events carry the useful detail.
    loggerInstance: log.child({ component: "http" }, { level: "warn" }),
    clientErrorHandler: answerMalformedRequest,
    // Errors raised before routing (a path that is not valid percent-encoding) get the API's shape too.
    frameworkErrors: (error, _request, reply) => {
      (reply as FastifyReply).code(400).send({ error: { code: "VALIDATION_ERROR", message: error.message } });
    },
  }) as unknown as FastifyInstance;
  const { tasks, changes, status, claims } = createTaskCore({ db, clock, cleanupDelayMs: config.cleanupDelayMs, log });
  const allowedHosts = HostAllowList.forServer(config.host, config.allowedHosts);
  const io = createSocketServer(fastify.server, {
    apiToken: config.apiToken,
    refusal: (headers) => allowedHosts.refusal(headers),
    tasks,
    log,
  });
  const events = new TaskEvents(io);
  changes.subscribe((change) => events.statusChanged(change.task, change.at));
  const metrics = new Metrics();
  const store = new RepositoryStore(join(config.dataDir, "repos"));
  const indexer = new RepositoryIndexer(db, store, clock);
  const workspaces =
    options.workspaces ??
    (await createWorkspaceManager(config, { db, clock, store, log: log.child({ component: "workspace" }) }));
  const agent = options.agent ?? createAgentRunner(config);
  const outputs = new OutputLogs(join(config.dataDir, "logs"), config.output.logMaxBytes, clock, log);
  const messages = new MessageLog({
    db,
    clock,
    emitChunk: (taskId, chunk) => events.streamChunk(taskId, chunk),
    outputs,
    limits: { maxMessageBytes: config.output.messageMaxBytes },
  });
  const engine = new TaskInitializationEngine({
    status,
    workspaces,
    indexer,
    store,
    tasks,
    onProgress: (taskId, progress) => events.initProgress(taskId, progress),
    log: log.child({ component: "init" }),
  });
  const turns = new TurnRunner({
    status,
    engine,
    workspaces,
    agent,
    messages,
    indexer,
    emitTurnEnd: (taskId, outcome, error) => {
      metrics.increment("umbra_turns_total", "Agent turns finished.");
      events.streamChunk(taskId, { type: "turn-end", status: outcome, error });
    },
    log: log.child({ component: "turn" }),
  });
  const teardown = new WorkspaceTeardown({ status, workspaces, tasks, log });
  const lifecycle = new TaskLifecycle({ tasks, status, turns, workspaces, teardown, claims, store, log });
  const cleanup =
    workspaces.mode === "remote"
      ? new TaskCleanupService({
          clock,
          tasks,
          status,
          claims,
          teardown,
          changes,
          intervalMs: config.cleanupIntervalMs,
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
    claims,
    restart: (task, message) => lifecycle.resume(task, message),
    isActive: (taskId) => turns.isRunning(taskId),
    log: log.child({ component: "recovery" }),
    intervalMs: config.healthCheckIntervalMs,
    dataDir: config.dataDir,
  });

  installRequestOriginGuard(fastify, allowedHosts);
  installHttpBasics(fastify, config);
  const repoUrls = new RepoUrlPolicy({ ...config, resolve: options.resolveHost });
  registerTaskRoutes(fastify, { tasks, lifecycle, messages, store, repoUrls, outputs });
  registerRepositoryRoutes(fastify, { tasks, store, repoUrls });
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
    tasks,
    changes,
    lifecycle,
    turns,
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

/**
 * Whether a request needs the API token. Decided on the route the request
 * matched, not on the raw URL: the router decodes the path, so
 * `/%61pi/tasks` reaches `/api/tasks` while its raw URL does not start with
 * `/api`. Requests that matched no route are judged on the raw URL (an
 * unknown `/api/...` path answers 401, not 404, without a token).
 */
function needsToken(request: FastifyRequest): boolean {
  const path = request.routeOptions.url ?? request.url;
  return path.startsWith("/api") || path.startsWith("/metrics");
}

/**
 * A request Node's HTTP parser refused (an unknown method, a broken request
 * line or header) is answered in the API's error shape too, then the
 * connection is closed.
 */
function answerMalformedRequest(error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  if (socket.writable) {
    const body = JSON.stringify({ error: { code: "VALIDATION_ERROR", message: "malformed HTTP request" } });
    socket.write(
      `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/** Auth, the error shape, and JSON-only 404s under /api. */
function installHttpBasics(fastify: FastifyInstance, config: ServerConfig): void {
  if (config.apiToken) {
    const expected = config.apiToken;
    fastify.addHook("onRequest", async (request) => {
      if (!needsToken(request)) return;
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
