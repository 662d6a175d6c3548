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
import { type Database, openDatabase, PgAdvisoryLocks, PgPubSub, type TaskRow } from "@repo/db";
import { type AgentKind, getStepsForMode } from "@repo/types";
import { startSpawnHost } from "@repo/workspace";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { type AgentCatalog, configuredAgents, singleAgent } from "./agent/catalog";
import type { AgentRunner } from "./agent/types";
import { configuredSecrets, type ServerConfig } from "./config";
import { createDelivery, type Delivery } from "./delivery";
import { DeliveryStore } from "./delivery/delivery-store";
import { GitCredentials } from "./delivery/git-credentials";
import { createEnvironments } from "./environments";
import type { EnvironmentCache } from "./environments/environment-cache";
import { AppError, CapacityError, NotFoundError, UnauthorizedError } from "./errors";
import { createWorkspaceManager } from "./execution";
import { AgentStateDirs } from "./execution/agent-state";
import type { WorkspaceManager } from "./execution/types";
import { TaskInitializationEngine } from "./initialization";
import { createLogger, type Logger } from "./logger";
import { Metrics } from "./metrics";
import { LocalReplicaBus, PgReplicaBus, type ReplicaBus } from "./replicas/replica-bus";
import { createPgSocketAdapter } from "./replicas/socket-adapter";
import { RepositoryIndexer } from "./repository/indexer";
import { RepositoryStore } from "./repository/repository-store";
import { registerDeliveryRoutes } from "./routes/delivery";
import { taskDescriber } from "./routes/dto";
import { registerEnvironmentRoutes } from "./routes/environments";
import { registerRepositoryRoutes } from "./routes/repositories";
import { registerTaskRoutes } from "./routes/tasks";
import { isSignedWebhook, registerWebhookRoutes } from "./routes/webhooks";
import { RepoUrlPolicy, type ResolveHost } from "./security/repo-url-policy";
import { HostAllowList, installRequestOriginGuard } from "./security/request-origin";
import { EgressNotices } from "./services/egress-notices";
import { MessageLog } from "./services/message-log";
import { OutputLogs } from "./services/output-log";
import { TaskCleanupService } from "./services/task-cleanup";
import { createTaskCore } from "./services/task-core";
import { TaskLifecycle } from "./services/task-lifecycle";
import { TaskOwnership } from "./services/task-ownership";
import { TaskRecovery } from "./services/task-recovery";
import type { TaskRepository } from "./services/task-repository";
import type { EndedTurn } from "./services/turn-records";
import { TurnRecords } from "./services/turn-records";
import { TurnRunner } from "./services/turn-runner";
import { WorkspaceCapacity } from "./services/workspace-capacity";
import { WorkspaceTeardown } from "./services/workspace-teardown";
import { createSocketServer, TaskEvents, type UmbraSocketServer } from "./socket";
import { tokenMatches } from "./utils/auth";
import { type Clock, systemClock } from "./utils/clock";
import type { Secret } from "./utils/redaction";
import { SecretBox } from "./utils/secret-box";
import type { TaskChanges } from "./utils/task-changes";
import type { TaskStatusStore } from "./utils/task-status";
import { WalCheckpoints } from "./utils/wal-checkpoints";

const WEB_DIST = fileURLToPath(new URL("../../web/dist", import.meta.url));

export interface UmbraServerOptions {
  config: ServerConfig;
  /** An open database; by default one is opened from the config (and closed with the server). */
  database?: Database;
  clock?: Clock;
  logger?: Logger;
  workspaces?: WorkspaceManager;
  /** One runner for every task (its kind is then the only one offered). Default: the configured agents. */
  agent?: AgentRunner;
  /**
   * The named secret values a task's agent output is redacted of.
   * Default: the configured credentials (configuredSecrets).
   */
  secretsFor?: (task: TaskRow) => Promise<Secret[]>;
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
  capacity: WorkspaceCapacity;
  /** Null when ENVIRONMENT_CACHE_MAX_MB is 0. */
  environmentCache: EnvironmentCache | null;
  /** The full-text index INDEX_REPOSITORY builds in the background. */
  indexer: RepositoryIndexer;
  ownership: TaskOwnership;
  /** Messages to and from the other server processes sharing the database (a local no-op with PGlite). */
  bus: ReplicaBus;
  workspaces: WorkspaceManager;
  delivery: Delivery;
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
  // Before the database grows this process: every process the server starts is forked from the host.
  await startSpawnHost().catch((error: unknown) =>
    log.warn({ err: error }, "spawn_host.unavailable: processes start from the server itself (slower)"),
  );
  const ownsDatabase = !options.database;
  const database =
    options.database ??
    (await openDatabase({
      databaseUrl: config.databaseUrl,
      dataDir: config.dataDir,
      templateDir: config.pgliteTemplateDir,
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
  const { tasks, changes, status, claims } = createTaskCore({
    db,
    clock,
    cleanupDelayMs: config.cleanupDelayMs,
    ownerLeaseMs: config.ownerLeaseMs,
    log,
  });
  const deliveries = new DeliveryStore(db, clock);
  const describe = taskDescriber(deliveries);
  const allowedHosts = HostAllowList.forServer(config.host, config.allowedHosts);
  const metrics = new Metrics();
  const io = createSocketServer(fastify.server, {
    apiToken: config.apiToken,
    refusal: (headers) => allowedHosts.refusal(headers),
    tasks,
    describe: describe.one,
    log,
  });
  const replicas = connectReplicas(database, status.ownerId, metrics, log);
  if (replicas.pubsub) io.adapter(createPgSocketAdapter(replicas.pubsub, log.child({ component: "socket" })));
  const { bus } = replicas;
  const events = new TaskEvents(io);
  changes.subscribe((change) => {
    if (change.remote) return; // the process that made it sent its events
    events.statusChanged(change.task, change.at);
    void bus.publish({ type: "task-changed", taskId: change.task.id, version: change.task.version });
  });
  bus.subscribe((message) => {
    if (message.type !== "task-changed") return;
    tasks
      .find(message.taskId)
      .then((task) => task && changes.publish({ task, previous: null, at: clock.now(), remote: true }))
      .catch((error) => log.warn({ taskId: message.taskId, err: error }, "replicas.change.read_failed"));
  });
  const credentials = new GitCredentials(config.delivery);
  const store = new RepositoryStore(join(config.dataDir, "repos"), {
    locks: replicas.locks ?? undefined,
    auth: (repoUrl, transfer) => credentials.withCredentials(repoUrl, transfer),
  });
  const walCheckpoints = new WalCheckpoints(database, clock, log.child({ component: "db" }));
  const indexer = new RepositoryIndexer(db, store, clock, {
    locks: replicas.locks ?? undefined,
    log: log.child({ component: "index" }),
    afterBatch: () => walCheckpoints.request(),
  });
  const secretBox = await SecretBox.load({ secretsKey: config.secretsKey, dataDir: config.dataDir });
  const agentState = new AgentStateDirs(join(config.dataDir, "agent-state"));
  const outputs = new OutputLogs(join(config.dataDir, "logs"), config.output.logMaxBytes, clock, log);
  const messages = new MessageLog({
    db,
    clock,
    emitChunk: (taskId, chunk) => events.streamChunk(taskId, chunk),
    outputs,
    limits: { maxMessageBytes: config.output.messageMaxBytes },
  });
  const egressNotices = new EgressNotices({ messages, log: log.child({ component: "egress" }) });
  // The catalog needs the provider (CLIs in a pod's image) and the provider the catalog (CLIs to mount).
  let agents: AgentCatalog | undefined;
  const workspaces =
    options.workspaces ??
    (await createWorkspaceManager(config, {
      db,
      clock,
      store,
      secrets: secretBox,
      agentState,
      agentMounts: (task) => agents?.hostDirs(task.agent as AgentKind | null) ?? [],
      onEgressDenied: (denial) => egressNotices.report(denial),
      log: log.child({ component: "workspace" }),
    }));
  agents = options.agent
    ? singleAgent(options.agent)
    : configuredAgents(config, { sandboxAgents: workspaces.vmProvider?.sandboxAgents });
  const catalog = agents;
  const environments = createEnvironments(config, { db, clock, log, metrics, workspaces, box: secretBox });
  const delivery = createDelivery({
    config: config.delivery,
    credentials,
    llm: config.llm,
    deliveries,
    clock,
    store,
    tasks,
    workspaces,
    messages,
    emit: (taskId, dto) => events.deliveryChanged(taskId, dto),
    log: log.child({ component: "delivery" }),
  });
  changes.subscribe((change) => {
    // The process that made a change delivers it; the others only relay its events.
    if (!change.remote) delivery.service.onTaskChange(change);
  });
  const engine = new TaskInitializationEngine({
    status,
    workspaces,
    indexer,
    store,
    tasks,
    dependencies: environments.installer,
    sandboxNetwork: (repoUrl) => environments.forTasks.sandboxNetwork(repoUrl, config.sandbox.network),
    onProgress: (taskId, progress) => events.initProgress(taskId, progress),
    log: log.child({ component: "init" }),
  });
  const secrets = configuredSecrets(config);
  const turns = new TurnRunner({
    status,
    engine,
    workspaces,
    agentFor: (choice) => catalog.runner(choice),
    secretsFor: options.secretsFor ?? (async () => secrets),
    records: new TurnRecords(db),
    messages,
    indexer,
    environments: environments.forTasks,
    clock,
    emitTurnEnd: (turn, error) => {
      countTurn(metrics, turn);
      events.streamChunk(turn.taskId, { type: "turn-end", status: turn.outcome, error });
    },
    beforeTurn: (task) => delivery.service.prepareTurn(task),
    log: log.child({ component: "turn" }),
  });
  const capacity = new WorkspaceCapacity({
    db,
    mode: workspaces.mode,
    max: workspaces.mode === "remote" ? config.maxActiveWorkspaces : null,
    tasks,
    status,
    changes,
    runCleanup: () => cleanup?.trigger() ?? Promise.resolve(),
    log: log.child({ component: "capacity" }),
    onEvicted: () =>
      metrics.increment("umbra_capacity_evictions_total", "Warm workspaces cleaned up early to make room."),
    onRefused: () => metrics.increment("umbra_capacity_refusals_total", "Requests refused with 429 CAPACITY."),
  });
  registerCapacityMetrics(metrics, capacity);
  const teardown = new WorkspaceTeardown({
    status,
    workspaces,
    tasks,
    clock,
    unreachableGraceMs: config.sandboxUnreachableGraceMs,
    messages,
    log,
  });
  // Built below; the ownership sweep and the lifecycle hand take-overs to it.
  let recovery: TaskRecovery | undefined;
  const takeOver = (task: TaskRow, message?: string) => recovery!.takeOver(task, message);
  const ownership = new TaskOwnership({
    db,
    clock,
    status,
    heartbeatMs: config.ownerHeartbeatMs,
    runningHere: () => turns.runningTaskIds(),
    onLost: (taskId) => turns.abandon(taskId),
    onTakenOver: (task) => takeOver(task),
    onHeartbeat: (owned) => metrics.set("umbra_owned_tasks", "Tasks whose running work this process owns.", owned),
    onTakeOver: () =>
      metrics.increment("umbra_lease_takeovers_total", "Work taken over from a server process that went away."),
    log: log.child({ component: "ownership" }),
  });
  const lifecycle = new TaskLifecycle({
    tasks,
    status,
    turns,
    workspaces,
    teardown,
    claims,
    store,
    capacity,
    ownership,
    bus,
    changes,
    clock,
    takeOver,
    agents: catalog,
    agentState,
    delivery: delivery.service,
    log,
  });
  const review = delivery.reviewLoop({ lifecycle, changes });
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

  recovery = new TaskRecovery({
    db,
    clock,
    status,
    workspaces,
    teardown,
    ownership,
    provider: workspaces.vmProvider ?? null,
    messages,
    claims,
    restart: (task, message) => lifecycle.resume(task, message),
    isActive: (taskId) => turns.isRunning(taskId),
    log: log.child({ component: "recovery" }),
    intervalMs: config.healthCheckIntervalMs,
    dataDir: config.dataDir,
  });
  const taskRecovery = recovery;

  installRequestOriginGuard(fastify, allowedHosts);
  installHttpBasics(fastify, config);
  const repoUrls = new RepoUrlPolicy({ ...config, resolve: options.resolveHost });
  registerTaskRoutes(fastify, { tasks, lifecycle, messages, store, repoUrls, outputs, describe });
  registerEnvironmentRoutes(fastify, { secrets: environments.secrets, environments: environments.store });
  registerRepositoryRoutes(fastify, { tasks, store, repoUrls });
  registerDeliveryRoutes(fastify, { tasks, store, remotes: delivery.remotes, delivery: delivery.service, describe });
  registerWebhookRoutes(fastify, {
    githubSecret: config.delivery.github.webhookSecret,
    gitlabSecret: config.delivery.gitlab.webhookSecret,
    mention: config.delivery.mention,
    deliveries,
    loop: review,
  });
  fastify.get("/api/health", async () => ({ ok: true }));
  fastify.get("/api/config", async () => ({
    mode: workspaces.mode,
    steps: getStepsForMode(workspaces.mode),
    cleanupDelayMs: config.cleanupDelayMs,
    agent: catalog.defaultKind,
    agents: await catalog.availability(),
    capacity: { active: await capacity.active(), max: capacity.max },
    delivery: delivery.configDto,
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
    recovery: taskRecovery,
    capacity,
    environmentCache: environments.cache,
    indexer,
    ownership,
    bus,
    workspaces,
    delivery,
    url: "",
    async listen() {
      await replicas.pubsub?.start();
      await taskRecovery.recoverAtStartup();
      await environments.cache?.init();
      await delivery.start();
      await fastify.listen({ port: config.port, host: config.host });
      const address = fastify.server.address();
      const port = typeof address === "object" && address ? address.port : config.port;
      server.url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
      cleanup?.start();
      walCheckpoints.start();
      taskRecovery.start();
      ownership.start();
      log.info({ url: server.url, mode: workspaces.mode, agent: catalog.defaultKind }, "server.listening");
      return server.url;
    },
    close(reason = "server shutting down") {
      closing ??= (async () => {
        log.info({ reason }, "server.closing");
        ownership.drain();
        await taskRecovery.stop();
        await cleanup?.stop();
        await delivery.stopIntake();
        await lifecycle.shutdown(reason);
        await indexer.close();
        await ownership.stop();
        await delivery.drain();
        io.close();
        await fastify.close();
        await workspaces.close?.();
        await environments.cache?.close();
        await replicas.close();
        await walCheckpoints.stop();
        if (ownsDatabase) await database.close();
        log.info("server.closed");
      })();
      return closing;
    },
  };
  return server;
}

function registerCapacityMetrics(metrics: Metrics, capacity: WorkspaceCapacity): void {
  metrics.increment("umbra_capacity_evictions_total", "Warm workspaces cleaned up early to make room.", 0);
  metrics.increment("umbra_capacity_refusals_total", "Requests refused with 429 CAPACITY.", 0);
  metrics.register("umbra_workspaces_active", "gauge", "Live workspaces (being made or ACTIVE).", () =>
    capacity.active(),
  );
  if (capacity.max !== null) {
    const max = capacity.max;
    metrics.register("umbra_workspaces_max", "gauge", "MAX_ACTIVE_WORKSPACES.", () => max);
  }
}

interface Replicas {
  bus: ReplicaBus;
  /** LISTEN/NOTIFY between the processes sharing a Postgres database; null with PGlite (one process). */
  pubsub: PgPubSub | null;
  /** Locks that hold across those processes (the repository store's); null with PGlite. */
  locks: PgAdvisoryLocks | null;
  close(): Promise<void>;
}

/**
 * What several server processes on one Postgres share besides the tables:
 * the message bus (socket events, changes, stops) and the store's locks.
 */
function connectReplicas(database: Database, self: string, metrics: Metrics, log: Logger): Replicas {
  if (database.kind !== "postgres" || !database.url) {
    return { bus: new LocalReplicaBus(), pubsub: null, locks: null, close: async () => {} };
  }
  const logged = log.child({ component: "replicas" });
  const pubsub = new PgPubSub({
    url: database.url,
    onError: (error, context) => logged.warn({ err: { message: error.message }, context }, "replicas.pubsub.error"),
    onReceived: (lagMs) => {
      metrics.set("umbra_adapter_lag_seconds", "Lag of the last message from the bus (LISTEN/NOTIFY).", lagMs / 1000);
      metrics.increment("umbra_adapter_messages_total", "Messages received on the bus (LISTEN/NOTIFY).");
    },
  });
  const locks = new PgAdvisoryLocks({
    url: database.url,
    onError: (error) => logged.warn({ err: { message: error.message } }, "replicas.locks.error"),
  });
  return {
    bus: new PgReplicaBus(pubsub, self, logged),
    pubsub,
    locks,
    async close() {
      await pubsub.close();
      await locks.close();
    },
  };
}

/** Turns and agent usage by agent kind, for /metrics. */
function countTurn(metrics: Metrics, turn: EndedTurn): void {
  const labels = { agent: turn.agent };
  metrics.increment("umbra_turns_total", "Agent turns finished.");
  metrics.increment("umbra_agent_turns_total", "Agent turns finished, by agent and outcome.", 1, {
    ...labels,
    outcome: turn.outcome,
  });
  if (!turn.usage) return;
  metrics.increment("umbra_agent_input_tokens_total", "Input tokens the agents used.", turn.usage.inputTokens, labels);
  metrics.increment(
    "umbra_agent_output_tokens_total",
    "Output tokens the agents used.",
    turn.usage.outputTokens,
    labels,
  );
  if (turn.usage.costUsd !== null) {
    metrics.increment(
      "umbra_agent_cost_usd_total",
      "Cost the agents reported, in US dollars.",
      turn.usage.costUsd,
      labels,
    );
  }
}

/**
 * Whether a request needs the API token. Decided on the route the request
 * matched, not on the raw URL: the router decodes the path, so
 * `/%61pi/tasks` reaches `/api/tasks` while its raw URL does not start with
 * `/api`. Requests that matched no route are judged on the raw URL (an
 * unknown `/api/...` path answers 401, not 404, without a token). The
 * webhook routes check their forge's signature instead.
 */
function needsToken(request: FastifyRequest): boolean {
  if (isSignedWebhook(request)) return false; // authenticated by the forge's signature instead
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
    if (error instanceof CapacityError) reply.header("retry-after", String(error.retryAfterSeconds));
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
