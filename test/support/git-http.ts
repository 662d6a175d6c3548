/**
 * A git repository served over plain HTTP (git's "dumb" protocol: static
 * files of a bare repository) with a gate: while it is held, requests wait
 * unanswered, the way a slow or stalled remote behaves. Tests use it to keep
 * a fetch — and with it an initialization step — in flight for as long as
 * they need.
 */
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { join, normalize } from "node:path";
import { tempDir } from "./git";

export interface GatedGitServer {
  /** Clone URL, e.g. http://127.0.0.1:41234/repo.git */
  url: string;
  /** Requests received so far. */
  requests(): number;
  /** Resolves when the first request arrives while the gate is held. */
  firstRequest: Promise<void>;
  /** Lets every waiting and future request through. */
  release(): void;
  /** Drops the connections of requests still waiting (the remote went away). */
  dropWaiting(): void;
  close(): Promise<void>;
}

/** Serves a bare copy of `repoDir` at /repo.git; the gate starts held unless `held` is false. */
export async function serveGatedRepo(repoDir: string, { held = true } = {}): Promise<GatedGitServer> {
  const bare = join(tempDir("umbra-http-repo-"), "repo.git");
  execFileSync("git", ["clone", "--quiet", "--bare", repoDir, bare]);
  execFileSync("git", ["update-server-info"], { cwd: bare });
  let open = !held;
  let count = 0;
  let waiting: { request: IncomingMessage; response: ServerResponse }[] = [];
  const sockets = new Set<Socket>();
  let arrived!: () => void;
  const firstRequest = new Promise<void>((resolve) => {
    arrived = resolve;
  });

  const serve = async (request: IncomingMessage, response: ServerResponse) => {
    const path = normalize(decodeURIComponent(new URL(request.url ?? "/", "http://x").pathname));
    if (!path.startsWith("/repo.git/")) {
      response.writeHead(404).end();
      return;
    }
    try {
      const content = await readFile(join(bare, path.slice("/repo.git/".length)));
      response.writeHead(200, { "content-type": "application/octet-stream" }).end(content);
    } catch {
      response.writeHead(404).end();
    }
  };

  const server = createServer((request, response) => {
    count++;
    if (open) {
      void serve(request, response);
      return;
    }
    waiting.push({ request, response });
    arrived();
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;

  return {
    url: `http://127.0.0.1:${port}/repo.git`,
    requests: () => count,
    firstRequest,
    release() {
      open = true;
      const queued = waiting;
      waiting = [];
      for (const { request, response } of queued) void serve(request, response);
    },
    dropWaiting() {
      const queued = waiting;
      waiting = [];
      for (const { request } of queued) request.socket.destroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
