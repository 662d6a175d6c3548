/**
 * The DNS-rebinding and cross-site guard (security/request-origin.ts), with a
 * real server and real HTTP and Socket.IO clients that send the Host and
 * Origin headers a browser would:
 * - a foreign Host (a page that rebound its name to 127.0.0.1) and a foreign
 *   or opaque Origin (a cross-site request) are refused with 403 FORBIDDEN,
 *   on every HTTP route and on the socket handshake, and change nothing;
 * - the same-origin web UI, clients without an Origin, the loopback names
 *   and the names in ALLOWED_HOSTS keep working.
 */
import { request as httpRequest } from "node:http";
import type { TaskDto } from "@repo/types";
import { io as connect } from "socket.io-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRepo } from "../../../test/support/git";
import { eventually } from "../../../test/support/lifecycle";
import { reliabilityCase } from "../../../test/support/reliability";
import { startTestServer, type TestServer } from "../../../test/support/server";
import { HostAllowList } from "../src/security/request-origin";

const FILE = "request-origin.test.ts";

interface RawAnswer {
  status: number;
  body: string;
}

/** An HTTP request with exactly these headers (fetch will not send a Host of our choosing). */
function send(url: string, method: string, path: string, headers: Record<string, string>, body?: string) {
  const target = new URL(url);
  return new Promise<RawAnswer>((resolve, reject) => {
    const req = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method,
        path,
        headers: { ...headers, ...(body ? { "content-type": "application/json" } : {}) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => {
          text += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

function expectForbidden(answer: RawAnswer, mentions: string, what: string): void {
  expect(answer.status, what).toBe(403);
  const body = JSON.parse(answer.body) as { error: { code: string; message: string } };
  expect(body.error.code, what).toBe("FORBIDDEN");
  expect(body.error.message, what).toContain(mentions);
  expect(body.error.message, what).toContain("ALLOWED_HOSTS");
}

/** Resolves with the socket's connect error, or "connected". */
function handshake(url: string, headers: Record<string, string>, transport: "websocket" | "polling") {
  const socket = connect(url, { transports: [transport], reconnection: false, forceNew: true, extraHeaders: headers });
  return new Promise<string>((resolve) => {
    socket.once("connect", () => resolve("connected"));
    socket.once("connect_error", (error) => resolve(`refused: ${error.message}`));
  }).finally(() => socket.close());
}

describe("the Host and Origin allow-list", () => {
  let t: TestServer;
  let port: string;
  let task: TaskDto;

  beforeAll(async () => {
    t = await startTestServer({ env: { ALLOWED_HOSTS: "umbra.example.com, *.corp.example" } });
    port = new URL(t.url).port;
    task = (await t.api<{ task: TaskDto }>("POST", "/api/tasks", { repoUrl: createRepo(), message: "true" })).body.task;
    await eventually(
      async () => (await t.api<{ task: TaskDto }>("GET", `/api/tasks/${task.id}`)).body.task.status === "COMPLETED",
    );
  });
  afterAll(() => t.close());

  const taskCount = async () => (await t.api<{ tasks: unknown[] }>("GET", "/api/tasks")).body.tasks.length;

  it("refuses a rebound page (foreign Host) on every route, before anything runs", async () => {
    await reliabilityCase(
      "hostile",
      FILE,
      "DNS rebinding: requests with Host: attacker.example:<port>",
      async (observe) => {
        const before = await taskCount();
        const host = { host: `attacker.example:${port}` };
        const body = JSON.stringify({ repoUrl: createRepo(), message: "touch /tmp/pwned" });
        const routes: [string, string, string?][] = [
          ["POST", "/api/tasks", body],
          ["GET", "/api/health"],
          ["GET", "/api/tasks"],
          ["GET", `/api/tasks/${task.id}`],
          ["GET", `/api/tasks/${task.id}/messages`],
          ["POST", `/api/tasks/${task.id}/messages`, JSON.stringify({ message: "true" })],
          ["POST", `/api/tasks/${task.id}/archive`],
          ["DELETE", `/api/tasks/${task.id}`],
          ["GET", `/api/tasks/${task.id}/log`],
          ["GET", "/metrics"],
          ["GET", "/"],
          ["GET", "/api/nothing-here"],
        ];
        for (const [method, path, payload] of routes) {
          expectForbidden(await send(t.url, method, path, host, payload), "attacker.example", `${method} ${path}`);
        }
        expect(await taskCount()).toBe(before);
        expect((await t.api<{ task: TaskDto }>("GET", `/api/tasks/${task.id}`)).body.task.status).toBe("COMPLETED");
        observe(`${routes.length} routes answered 403 FORBIDDEN naming the host; no task created, none changed`);
      },
    );
  });

  it("refuses cross-site requests (foreign or opaque Origin), even with a good Host", async () => {
    await reliabilityCase(
      "hostile",
      FILE,
      "cross-site requests: Origin https://attacker.example and null",
      async (observe) => {
        const before = await taskCount();
        const body = JSON.stringify({ repoUrl: createRepo(), message: "touch /tmp/pwned" });
        for (const origin of ["https://attacker.example", `http://attacker.example:${port}`, "null", "file://"]) {
          const headers = { host: `127.0.0.1:${port}`, origin };
          expectForbidden(
            await send(t.url, "POST", "/api/tasks", headers, body),
            "origin",
            `POST with Origin ${origin}`,
          );
          expectForbidden(await send(t.url, "GET", "/api/tasks", headers), "origin", `GET with Origin ${origin}`);
        }
        expect(await taskCount()).toBe(before);
        observe("POST /api/tasks and GET /api/tasks answered 403 for 4 foreign origins; no task created");
      },
    );
  });

  it("serves the same-origin web UI, clients without an Origin, loopback names and ALLOWED_HOSTS", async () => {
    const allowed: Record<string, string>[] = [
      { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` },
      { host: `localhost:${port}`, origin: `http://localhost:${port}` },
      { host: `[::1]:${port}` },
      { host: `127.0.0.1:${port}` },
      { host: "umbra.example.com", origin: "https://umbra.example.com" },
      { host: `build.corp.example:${port}` },
      { host: `127.0.0.1:${port}`, origin: "http://umbra.example.com:8080" },
    ];
    for (const headers of allowed) {
      const answer = await send(t.url, "GET", `/api/tasks/${task.id}`, headers);
      expect(answer.status, JSON.stringify(headers)).toBe(200);
    }
    const created = await send(
      t.url,
      "POST",
      "/api/tasks",
      { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` },
      JSON.stringify({ repoUrl: createRepo(), message: "true" }),
    );
    expect(created.status).toBe(201);
    const id = (JSON.parse(created.body) as { task: TaskDto }).task.id;
    await eventually(
      async () => (await t.api<{ task: TaskDto }>("GET", `/api/tasks/${id}`)).body.task.status === "COMPLETED",
    );
    for (const host of ["umbra.example.com.evil", "corp.example", "xcorp.example"]) {
      expectForbidden(await send(t.url, "GET", "/api/health", { host }), host, host);
    }
  });

  it("refuses the socket handshake for a foreign Host or Origin, on both transports, with the reason", async () => {
    await reliabilityCase("hostile", FILE, "socket handshake with a foreign Host or Origin", async (observe) => {
      for (const transport of ["websocket", "polling"] as const) {
        expect(await handshake(t.url, { origin: "https://attacker.example" }, transport)).toMatch(/^refused/);
        expect(await handshake(t.url, { origin: `http://127.0.0.1:${port}` }, transport)).toBe("connected");
        expect(await handshake(t.url, {}, transport)).toBe("connected");
      }
      // The client's polling transport cannot set Host (XMLHttpRequest forbids it): raw requests for that one.
      expect(await handshake(t.url, { host: `attacker.example:${port}` }, "websocket")).toMatch(/^refused/);
      const handshakePath = "/socket.io/?EIO=4&transport=polling";
      const foreignHost = await send(t.url, "GET", handshakePath, { host: `attacker.example:${port}` });
      expect(foreignHost.status).toBe(403);
      expect(foreignHost.body).toContain("DNS-rebinding guard");
      const foreignOrigin = await send(t.url, "GET", handshakePath, {
        host: `127.0.0.1:${port}`,
        origin: "https://attacker.example",
      });
      expect(foreignOrigin.status).toBe(403);
      expect(foreignOrigin.body).toContain("cross-site request from origin");
      expect((await send(t.url, "GET", handshakePath, { host: `127.0.0.1:${port}` })).status).toBe(200);
      observe(
        "websocket and polling handshakes refused for Origin https://attacker.example and Host attacker.example (403 with the reason); same-origin and Origin-less handshakes connect",
      );
    });
  });
});

describe("HostAllowList", () => {
  it("matches host names without their port, case-insensitively, IPv6 in any spelling", () => {
    const list = new HostAllowList(["Example.COM", "::1", "*.corp.example", "10.0.0.7:8080"]);
    for (const host of ["example.com", "EXAMPLE.com:3000", "example.com.", "[::1]", "[::1]:80", "a.corp.example"]) {
      expect(list.allows(host), host).toBe(true);
    }
    for (const host of [
      "corp.example",
      "example.com.evil",
      "evil.com",
      "10.0.0.8",
      "[::2]",
      "",
      "a b",
      "x@example.com",
    ]) {
      expect(list.allows(host), host).toBe(false);
    }
    expect(list.allows("10.0.0.7")).toBe(true);
  });

  it("for a server on a wildcard address, also allows the machine's own addresses", () => {
    expect(HostAllowList.forServer("0.0.0.0", []).allows("127.0.0.1")).toBe(true);
    expect(HostAllowList.forServer("127.0.0.1", []).allows("evil.example")).toBe(false);
    expect(HostAllowList.forServer("umbra.internal", []).allows("umbra.internal:3000")).toBe(true);
  });
});
