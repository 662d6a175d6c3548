/**
 * The sidecar's HTTP server: authenticates every request, dispatches it to
 * its route and answers errors in the shared shape.
 *
 * Invariants:
 * - No route, not even /health, answers without the bearer token.
 * - Logs carry method, path, status and duration; never headers, bodies or the token.
 * - shutdown() stops every running command's process group before the server closes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createLocalExecutor, type LocalExecutor } from "@repo/workspace";
import { createTokenCheck } from "./auth";
import { errorAnswer, HttpError, sendJson } from "./http";
import type { Logger } from "./logger";
import { type RouteContext, routes, type SandboxContext } from "./routes";

export interface SidecarServerOptions {
  /** Absolute path of the workspace directory. */
  workspace: string;
  token: string;
  logger: Logger;
  /** Defaults to a local executor on `workspace`. */
  executor?: LocalExecutor;
  /** The agent's sandbox: started (or restarted) before every request, since every route may run git in it. */
  sandbox?: SandboxContext;
}

export interface SidecarServer {
  server: Server;
  /** Stops running commands and closes the server; resolves once no request is left. */
  shutdown(): Promise<void>;
}

async function ensureSandbox(sandbox: SandboxContext | undefined): Promise<void> {
  try {
    await sandbox?.box.ensure();
  } catch (error) {
    throw new HttpError(503, "SANDBOX_UNAVAILABLE", `the agent's sandbox cannot start: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

export function createSidecarServer(options: SidecarServerOptions): SidecarServer {
  const executor = options.executor ?? createLocalExecutor(options.workspace);
  const isAuthorized = createTokenCheck(options.token);
  const log = options.logger;
  const running = new Set<AbortController>();
  const track = (controller: AbortController) => {
    running.add(controller);
    return () => running.delete(controller);
  };

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const startedAt = performance.now();
    const url = new URL(req.url ?? "/", "http://sidecar.invalid");
    try {
      if (!isAuthorized(req.headers)) throw new HttpError(401, "UNAUTHORIZED", "missing or invalid bearer token");
      const route = routes.get(`${req.method} ${url.pathname}`);
      if (!route) throw new HttpError(404, "NOT_FOUND", `no route for ${req.method} ${url.pathname}`);
      await ensureSandbox(options.sandbox);
      const ctx: RouteContext = { req, res, url, executor, track, sandbox: options.sandbox };
      await route(ctx);
    } catch (error) {
      const answer = errorAnswer(error);
      if (answer.status >= 500) log.error({ err: error, path: url.pathname }, "request.failed");
      if (!res.headersSent) sendJson(res, answer.status, answer.body);
      else res.destroy();
    } finally {
      const durationMs = Math.round(performance.now() - startedAt);
      log.info({ method: req.method, path: url.pathname, status: res.statusCode, durationMs }, "request");
    }
  }

  const inflight = new Set<Promise<void>>();
  const server = createServer((req, res) => {
    const done = handle(req, res);
    inflight.add(done);
    void done.finally(() => inflight.delete(done));
  });

  return {
    server,
    shutdown: async () => {
      for (const controller of running) controller.abort();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // Answers in flight (a cancelled command's exit line) go out first; then keep-alive
      // connections are cut so that a client's idle socket cannot hold the process open.
      await Promise.allSettled([...inflight]);
      server.closeAllConnections();
      await closed;
    },
  };
}
