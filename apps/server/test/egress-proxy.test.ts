/**
 * The egress proxy and its policy, with real HTTP clients speaking the proxy
 * protocol (CONNECT and absolute-form requests) to real listeners: the
 * per-sandbox unix socket and the TCP listener pods use. Upstreams are small
 * servers on 127.0.0.1; names resolve through an injected resolver (no DNS).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type LoopbackService, startLoopbackService } from "../../../test/support/containment";
import {
  defaultAllowedDomains,
  EgressPolicy,
  isInternalAddress,
  type NetworkPolicy,
  parseEntry,
} from "../src/execution/vm/egress/egress-policy";
import { type EgressDenial, EgressProxy } from "../src/execution/vm/egress/egress-proxy";
import type { ProviderLogger } from "../src/execution/vm/types";

const silent: ProviderLogger = { info: () => {}, warn: () => {}, error: () => {}, child: () => silent };

describe("the egress policy", () => {
  it.each([
    ["example.com", { host: "example.com", wildcard: false, port: null }],
    ["*.Example.COM:8443", { host: "example.com", wildcard: true, port: 8443 }],
    [".example.com", { host: "example.com", wildcard: true, port: null }],
    ["127.0.0.1:8080", { host: "127.0.0.1", wildcard: false, port: 8080 }],
    ["[::1]:9000", { host: "::1", wildcard: false, port: 9000 }],
  ])("parses %s", (raw, entry) => {
    expect(parseEntry(raw)).toEqual(entry);
  });

  it.each(["", "http://example.com", "exa mple.com", "*.127.0.0.1", "example.com:0", "example.com:70000"])(
    "refuses the entry %j",
    (raw) => {
      expect(parseEntry(raw)).toBeNull();
    },
  );

  it.each([
    ["127.0.0.1", true],
    ["10.1.2.3", true],
    ["172.20.0.1", true],
    ["192.168.1.1", true],
    ["169.254.169.254", true],
    ["100.64.0.1", true],
    ["0.0.0.0", true],
    ["::1", true],
    ["fd00::1", true],
    ["fe80::1", true],
    ["::ffff:127.0.0.1", true],
    ["93.184.215.14", false],
    ["2606:4700::1111", false],
  ])("counts %s as internal: %s", (address, internal) => {
    expect(isInternalAddress(address)).toBe(internal);
  });

  it("admits listed names, subdomains of wildcards and listed ports only", () => {
    const policy = new EgressPolicy({
      mode: "allowlist",
      allowedDomains: ["pypi.org", "*.github.com", "api.x.io:443"],
    });
    expect(policy.admitsName("pypi.org", 443)).toBe(true);
    expect(policy.admitsName("evil-pypi.org", 443)).toBe(false);
    expect(policy.admitsName("codeload.github.com", 443)).toBe(true);
    expect(policy.admitsName("github.com", 443)).toBe(false);
    expect(policy.admitsName("api.x.io", 443)).toBe(true);
    expect(policy.admitsName("api.x.io", 80)).toBe(false);
  });

  it("reaches an internal address only through an entry naming exactly that host and port", () => {
    const policy = new EgressPolicy({ mode: "allowlist", allowedDomains: ["127.0.0.1:8080", "rebind.example"] });
    expect(policy.admitsAddress("127.0.0.1", "127.0.0.1", 8080)).toBe(true);
    expect(policy.admitsAddress("127.0.0.1", "127.0.0.1", 5432)).toBe(false);
    // A public name that resolves to loopback (DNS rebinding) is refused.
    expect(policy.admitsAddress("rebind.example", "127.0.0.1", 443)).toBe(false);
    expect(policy.admitsAddress("rebind.example", "93.184.215.14", 443)).toBe(true);
  });

  it("in mode on admits every public address but still no internal one; in mode off nothing", () => {
    const on = new EgressPolicy({ mode: "on", allowedDomains: [] });
    expect(on.admitsAddress("anything.example", "93.184.215.14", 443)).toBe(true);
    expect(on.admitsAddress("metadata.internal", "169.254.169.254", 80)).toBe(false);
    const off = new EgressPolicy({ mode: "off", allowedDomains: ["pypi.org"] });
    expect(off.admitsName("pypi.org", 443)).toBe(false);
  });

  it("defaults to the configured model endpoints, or the vendors' hosts, and the package registries", () => {
    const withEndpoint = defaultAllowedDomains({ anthropicBaseUrl: "http://127.0.0.1:4010/v1" });
    expect(withEndpoint).toContain("127.0.0.1:4010");
    expect(withEndpoint).not.toContain("api.anthropic.com");
    expect(withEndpoint).toContain("api.openai.com");
    expect(withEndpoint).toEqual(expect.arrayContaining(["registry.npmjs.org", "pypi.org", "files.pythonhosted.org"]));
    expect(defaultAllowedDomains({ llmBaseUrl: "https://llm.corp.example/v1" })).toContain("llm.corp.example:443");
  });
});

/** Sends a CONNECT through the proxy; resolves with the status line and the socket (tunnel open on 200). */
function connectThrough(proxy: { path?: string; port?: number }, target: string) {
  return new Promise<{ status: string; socket: Socket }>((resolve, reject) => {
    const socket = proxy.path ? connect(proxy.path) : connect(proxy.port!, "127.0.0.1");
    let head = "";
    socket.on("error", reject);
    socket.on("data", function onData(chunk: Buffer) {
      head += chunk.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      socket.off("data", onData);
      resolve({ status: head.split("\r\n")[0]!, socket });
    });
    socket.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`);
  });
}

/** A plain-http request through the proxy (absolute-form URL). */
function getThrough(socketPath: string, url: string) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ socketPath, path: url, method: "GET", headers: { host: new URL(url).host } }, (res) => {
      let body = "";
      res.on("data", (chunk) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("the egress proxy", () => {
  let dir: string;
  let upstream: LoopbackService;
  let other: LoopbackService;
  let proxy: EgressProxy;
  const denials: EgressDenial[] = [];
  const lookups: string[] = [];
  let socketPath: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "umbra-egress-"));
    upstream = await startLoopbackService({ ok: true });
    other = await startLoopbackService({ secret: true });
  });

  afterAll(async () => {
    await upstream.close();
    await other.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function attach(policy: NetworkPolicy, resolveTo: Record<string, string> = {}) {
    proxy = new EgressProxy({
      logger: silent,
      onDenied: (denial) => denials.push(denial),
      lookup: async (host) => {
        lookups.push(host);
        const address = resolveTo[host];
        if (!address) throw new Error(`cannot resolve ${host}`);
        return address;
      },
    });
    socketPath = join(dir, `egress-${Date.now()}.sock`);
    await proxy.attach("task-1", socketPath, policy);
  }

  afterEach(async () => {
    await proxy?.close();
    denials.length = 0;
    lookups.length = 0;
  });

  it("tunnels CONNECT to an allowed endpoint and relays bytes both ways", async () => {
    await attach({ mode: "allowlist", allowedDomains: [`127.0.0.1:${upstream.port}`] });
    const { status, socket } = await connectThrough({ path: socketPath }, `127.0.0.1:${upstream.port}`);
    expect(status).toBe("HTTP/1.1 200 Connection Established");
    const reply = await new Promise<string>((resolve) => {
      let text = "";
      socket.on("data", (chunk: Buffer) => {
        text += chunk.toString();
        if (text.includes('{"ok":true}')) resolve(text);
      });
      socket.write("GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    });
    socket.destroy();
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(denials).toEqual([]);
  });

  it("forwards plain http to an allowed endpoint", async () => {
    await attach({ mode: "allowlist", allowedDomains: [`127.0.0.1:${upstream.port}`] });
    const answer = await getThrough(socketPath, `http://127.0.0.1:${upstream.port}/v1/models`);
    expect(answer).toEqual({ status: 200, body: '{"ok":true}' });
  });

  it("refuses another port on loopback with 403, reports it, and never connects", async () => {
    await attach({ mode: "allowlist", allowedDomains: [`127.0.0.1:${upstream.port}`] });
    const hits = other.hits;
    const { status, socket } = await connectThrough({ path: socketPath }, `127.0.0.1:${other.port}`);
    socket.destroy();
    expect(status).toBe("HTTP/1.1 403 Forbidden");
    const plain = await getThrough(socketPath, `http://127.0.0.1:${other.port}/`);
    expect(plain.status).toBe(403);
    expect(plain.body).toContain("blocked by the sandbox's network policy: 127.0.0.1");
    expect(other.hits).toBe(hits);
    expect(denials).toEqual([
      { taskId: "task-1", host: "127.0.0.1", port: other.port, reason: "not in the allowlist" },
      { taskId: "task-1", host: "127.0.0.1", port: other.port, reason: "not in the allowlist" },
    ]);
  });

  it("does not resolve a name outside the allowlist, and refuses a listed name that resolves inside", async () => {
    await attach(
      { mode: "allowlist", allowedDomains: ["rebind.example"] },
      { "rebind.example": "127.0.0.1", "example.com": "93.184.215.14" },
    );
    const outside = await connectThrough({ path: socketPath }, "example.com:443");
    outside.socket.destroy();
    const rebound = await connectThrough({ path: socketPath }, `rebind.example:${other.port}`);
    rebound.socket.destroy();
    expect([outside.status, rebound.status]).toEqual(["HTTP/1.1 403 Forbidden", "HTTP/1.1 403 Forbidden"]);
    expect(lookups).toEqual(["rebind.example"]);
    expect(denials.map((d) => [d.host, d.reason])).toEqual([
      ["example.com", "not in the allowlist"],
      ["rebind.example", "internal address"],
    ]);
  });

  it("refuses everything, and says so, when the network is off", async () => {
    await attach({ mode: "off", allowedDomains: [`127.0.0.1:${upstream.port}`] });
    const { status, socket } = await connectThrough({ path: socketPath }, `127.0.0.1:${upstream.port}`);
    socket.destroy();
    expect(status).toBe("HTTP/1.1 403 Forbidden");
    expect(denials).toEqual([{ taskId: "task-1", host: "127.0.0.1", port: upstream.port, reason: "network off" }]);
  });

  it("serves pods over TCP by their address, and refuses an address it cannot attribute", async () => {
    await attach({ mode: "off", allowedDomains: [] });
    const policy: NetworkPolicy = { mode: "allowlist", allowedDomains: [`127.0.0.1:${upstream.port}`] };
    const seen: string[] = [];
    const server = await proxy.listenTcp(0, "127.0.0.1", async (address) => {
      seen.push(address);
      return seen.length === 1 ? { taskId: "pod-task", policy } : null;
    });
    const port = (server.address() as { port: number }).port;
    const first = await connectThrough({ port }, `127.0.0.1:${upstream.port}`);
    first.socket.destroy();
    const second = await connectThrough({ port }, `127.0.0.1:${upstream.port}`);
    second.socket.destroy();
    expect(first.status).toBe("HTTP/1.1 200 Connection Established");
    expect(second.status).toBe("HTTP/1.1 403 Forbidden");
    expect(seen.every((address) => /127\.0\.0\.1$/.test(address))).toBe(true);
  });

  it("removes a sandbox's socket when it is detached", async () => {
    await attach({ mode: "on", allowedDomains: [] });
    expect(proxy.isAttached("task-1")).toBe(true);
    await proxy.detach("task-1");
    expect(proxy.isAttached("task-1")).toBe(false);
    await expect(connectThrough({ path: socketPath }, "example.com:443")).rejects.toThrow(/ENOENT/);
  });
});
