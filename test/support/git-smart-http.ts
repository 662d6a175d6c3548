/**
 * Git's smart HTTP protocol on loopback, served by the real `git
 * http-backend` (as CGI) behind HTTP basic auth that is required and
 * checked: a request without the right user and password gets 401 with a
 * `WWW-Authenticate` challenge, the way a forge answers. Repositories are
 * bare repositories under a root directory, addressed as `/<path>.git`.
 *
 * Requests are recorded (method, path, the user they authenticated as) and
 * can be held unanswered while a test looks at the client (`hold()`).
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { join } from "node:path";
import { tempDir } from "./git";

export interface GitRequest {
  method: string;
  path: string;
  query: string;
  /** The basic-auth user, when the password matched; null for anonymous or rejected requests. */
  user: string | null;
  status: number;
}

export interface SmartGitHandler {
  root: string;
  /** Bare repository at `/<name>.git`, cloned from `source`. Returns its directory. */
  addRepo(name: string, source: string): string;
  /** Answers a request if it is a git request (path ends in .git/…); false otherwise. */
  handle(request: IncomingMessage, response: ServerResponse): boolean;
  requests: GitRequest[];
  /** Holds every git request until `release()`; `held` resolves when one arrives. */
  hold(): { held: Promise<void>; release(): void };
  /** Changes the accepted credentials. */
  setCredentials(username: string, password: string): void;
}

const GIT_PATH = /^\/(.+\.git)(\/.*)$/;

export function smartGitHandler(credentials: { username: string; password: string }): SmartGitHandler {
  const root = tempDir("umbra-smart-git-");
  const requests: GitRequest[] = [];
  let accepted = { ...credentials };
  let gate: { promise: Promise<void>; arrived: () => void } | null = null;

  const authenticate = (request: IncomingMessage): string | null => {
    const header = request.headers.authorization ?? "";
    if (!header.startsWith("Basic ")) return null;
    const decoded = Buffer.from(header.slice(6), "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    const user = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    return user === accepted.username && password === accepted.password ? user : null;
  };

  const serve = (request: IncomingMessage, response: ServerResponse, repo: string, pathInfo: string) => {
    const url = new URL(request.url ?? "/", "http://git.local");
    const user = authenticate(request);
    const record: GitRequest = { method: request.method ?? "", path: url.pathname, query: url.search, user, status: 0 };
    requests.push(record);
    if (!user) {
      record.status = 401;
      request.resume();
      response.writeHead(401, { "www-authenticate": 'Basic realm="git"', "content-type": "text/plain" });
      response.end("authentication required\n");
      return;
    }
    const backend = spawn("git", ["http-backend"], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: "1",
        GIT_CONFIG_NOSYSTEM: "1",
        HOME: root,
        REQUEST_METHOD: request.method ?? "GET",
        PATH_INFO: `/${repo}${pathInfo}`,
        QUERY_STRING: url.search.replace(/^\?/, ""),
        CONTENT_TYPE: request.headers["content-type"] ?? "",
        REMOTE_USER: user,
        REMOTE_ADDR: "127.0.0.1",
        HTTP_CONTENT_ENCODING: String(request.headers["content-encoding"] ?? ""),
        GIT_PROTOCOL: String(request.headers["git-protocol"] ?? ""),
      },
      stdio: ["pipe", "pipe", "inherit"],
    });
    request.pipe(backend.stdin);
    let head = Buffer.alloc(0);
    let headersSent = false;
    backend.stdout.on("data", (chunk: Buffer) => {
      if (headersSent) {
        response.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
        const colon = line.indexOf(":");
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (name === "status") status = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      record.status = status;
      response.writeHead(status, headers);
      headersSent = true;
      response.write(head.subarray(end + 4));
    });
    backend.on("close", () => {
      if (!headersSent) {
        record.status = 500;
        response.writeHead(500);
      }
      response.end();
    });
  };

  return {
    root,
    requests,
    addRepo(name, source) {
      const dir = join(root, `${name}.git`);
      mkdirSync(join(dir, ".."), { recursive: true });
      execFileSync("git", ["clone", "--quiet", "--bare", source, dir]);
      execFileSync("git", ["config", "http.receivepack", "true"], { cwd: dir });
      return dir;
    },
    handle(request, response) {
      const path = new URL(request.url ?? "/", "http://git.local").pathname;
      const match = GIT_PATH.exec(path);
      if (!match) return false;
      const [, repo, pathInfo] = match;
      const current = gate;
      if (current) {
        current.arrived();
        void current.promise.then(() => serve(request, response, repo!, pathInfo!));
      } else {
        serve(request, response, repo!, pathInfo!);
      }
      return true;
    },
    hold() {
      let release!: () => void;
      let arrived!: () => void;
      const promise = new Promise<void>((resolve) => {
        release = resolve;
      });
      const held = new Promise<void>((resolve) => {
        arrived = resolve;
      });
      gate = { promise, arrived };
      return {
        held,
        release() {
          gate = null;
          release();
        },
      };
    },
    setCredentials(username, password) {
      accepted = { username, password };
    },
  };
}

export interface SmartGitServer extends SmartGitHandler {
  /** e.g. http://127.0.0.1:41234 */
  origin: string;
  /** Clone URL of the repository `name`. */
  urlOf(name: string): string;
  close(): Promise<void>;
}

/** A loopback server with nothing but git's smart HTTP protocol behind basic auth. */
export async function startSmartGitServer(credentials: {
  username: string;
  password: string;
}): Promise<SmartGitServer> {
  const handler = smartGitHandler(credentials);
  const { server, origin, close } = await listenOnLoopback((request, response) => {
    if (!handler.handle(request, response)) response.writeHead(404).end();
  });
  void server;
  return Object.assign(handler, { origin, urlOf: (name: string) => `${origin}/${name}.git`, close });
}

/** Starts `listener` on a free loopback port; `close` also drops open connections. */
export async function listenOnLoopback(
  listener: (request: IncomingMessage, response: ServerResponse) => void,
): Promise<{ server: Server; origin: string; close(): Promise<void> }> {
  const server = createServer(listener);
  const sockets = new Set<Socket>();
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    server,
    origin: `http://127.0.0.1:${port}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
