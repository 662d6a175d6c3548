/**
 * The egress proxy the server runs for its sandboxes: an HTTP proxy (CONNECT
 * for TLS and anything else tunnelled, absolute-form requests for plain
 * http) that lets a sandbox reach only what its policy allows.
 *
 * Each sandbox gets a listener of its own on a unix socket in its directory
 * (mounted into the sandbox, relayed from 127.0.0.1 inside by the sidecar),
 * so the proxy knows which task a connection comes from without trusting
 * anything the sandbox says. Pods (kubernetes provider) reach one TCP
 * listener instead (listenTcp), and are told apart by their address.
 *
 * Invariants:
 * - The policy is decided before a name is resolved (names outside the
 *   allowlist are never looked up) and again on the resolved address, which
 *   is the one connected to (egress-policy.ts).
 * - Every refusal is answered with 403 and reported once through `onDenied`
 *   (task, host, port, why): the server shows it on the task. Nothing of the
 *   request beyond host and port is recorded.
 * - Failures of one connection end that connection only.
 */
import { lookup as dnsLookup } from "node:dns/promises";
import { chmod, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import { connect, isIP, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { ProviderLogger } from "../types";
import { EgressPolicy, type NetworkPolicy, normalizeHost } from "./egress-policy";

export interface EgressDenial {
  taskId: string;
  host: string;
  port: number;
  /** Why: "not in the allowlist", "network off", "internal address", "unresolvable". */
  reason: string;
}

/** Resolves a host name to one address (injectable: tests have no DNS). */
export type HostLookup = (host: string) => Promise<string>;

export interface EgressProxyOptions {
  logger: ProviderLogger;
  /** Called for every refused connection. Must not throw. */
  onDenied?: (denial: EgressDenial) => void;
  /** Default: the system resolver (dns.lookup). */
  lookup?: HostLookup;
  /** Milliseconds to wait for an upstream connection. Default 15000. */
  connectTimeoutMs?: number;
}

const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "upgrade",
];

const defaultLookup: HostLookup = async (host) => (await dnsLookup(host)).address;

interface Attached {
  server: Server;
  socketPath: string;
  policy: EgressPolicy;
}

/** Who a TCP client is: its task and that task's policy; null refuses it. */
export type IdentifyClient = (address: string) => Promise<{ taskId: string; policy: NetworkPolicy } | null>;

type Verdict = { allowed: true; address: string } | { allowed: false; reason: string };

interface Client {
  taskId: string;
  policy: EgressPolicy;
}

export class EgressProxy {
  private readonly attached = new Map<string, Attached>();
  private readonly tcpServers = new Set<Server>();
  private readonly lookup: HostLookup;
  private readonly connectTimeoutMs: number;

  constructor(private readonly options: EgressProxyOptions) {
    this.lookup = options.lookup ?? defaultLookup;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 15_000;
  }

  /** Whether a listener serves `taskId`. */
  isAttached(taskId: string): boolean {
    return this.attached.has(taskId);
  }

  /**
   * Serves `taskId`'s sandbox on `socketPath` under `policy`. A listener that
   * is already attached for the task is replaced.
   */
  async attach(taskId: string, socketPath: string, policy: NetworkPolicy): Promise<void> {
    await this.detach(taskId);
    const entry: Attached = { server: createServer(), socketPath, policy: new EgressPolicy(policy) };
    const log = this.options.logger.child({ taskId, component: "egress" });
    const known = async (): Promise<Client> => ({ taskId, policy: entry.policy });
    entry.server.on("request", (req, res) => void this.forward(known, req, res));
    entry.server.on("connect", (req, socket: Duplex, head: Buffer) => void this.tunnel(known, req, socket, head));
    entry.server.on("clientError", (_error, socket) => socket.destroy());
    await rm(socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      entry.server.once("error", reject);
      entry.server.listen(socketPath, () => {
        entry.server.off("error", reject);
        resolve();
      });
    });
    entry.server.on("error", (error) => log.error({ err: error }, "egress.listener_failed"));
    // The sandbox's unprivileged user connects; nobody else can reach its directory.
    await chmod(socketPath, 0o666);
    this.attached.set(taskId, entry);
    log.info({ mode: policy.mode, allowed: policy.allowedDomains.length }, "egress.attached");
  }

  /** Stops serving `taskId` and removes its socket. Idempotent. */
  async detach(taskId: string): Promise<void> {
    const entry = this.attached.get(taskId);
    if (!entry) return;
    this.attached.delete(taskId);
    await closeServer(entry.server);
    await rm(entry.socketPath, { force: true });
  }

  /**
   * Serves sandboxes that connect over TCP (pods, through a Service): each
   * connection is attributed by its source address with `identify`; an
   * unknown source is refused. Returns the listening server (close it to stop).
   */
  async listenTcp(port: number, host: string, identify: IdentifyClient): Promise<Server> {
    const server = createServer();
    const known = async (req: IncomingMessage) => {
      const client = await identify(req.socket.remoteAddress ?? "").catch(() => null);
      return client ? { taskId: client.taskId, policy: new EgressPolicy(client.policy) } : null;
    };
    server.on("request", (req, res) => void this.forward(() => known(req), req, res));
    server.on("connect", (req, socket: Duplex, head: Buffer) => void this.tunnel(() => known(req), req, socket, head));
    server.on("clientError", (_error, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.tcpServers.add(server);
    return server;
  }

  /** Stops every listener (sandboxes keep running; a later server attaches again). */
  async close(): Promise<void> {
    await Promise.all([...this.attached.keys()].map((taskId) => this.detach(taskId)));
    await Promise.all([...this.tcpServers].map(closeServer));
    this.tcpServers.clear();
  }

  private async decide(client: Client | null, host: string, port: number): Promise<Verdict> {
    if (!client) return { allowed: false, reason: "unknown client" };
    const { taskId, policy } = client;
    const name = normalizeHost(host);
    const deny = (reason: string): Verdict => {
      this.report({ taskId, host: name, port, reason });
      return { allowed: false, reason };
    };
    if (!name || !Number.isInteger(port) || port < 1 || port > 65535) return deny("invalid destination");
    if (policy.policy.mode === "off") return deny("network off");
    if (!policy.admitsName(name, port)) return deny("not in the allowlist");
    let address: string;
    try {
      address = isIP(name) ? name : await this.lookup(name);
    } catch {
      return deny("unresolvable");
    }
    if (!policy.admitsAddress(name, address, port)) return deny("internal address");
    return { allowed: true, address };
  }

  private report(denial: EgressDenial): void {
    this.options.logger
      .child({ taskId: denial.taskId })
      .info({ host: denial.host, port: denial.port, reason: denial.reason }, "egress.denied");
    try {
      this.options.onDenied?.(denial);
    } catch (error) {
      this.options.logger.error({ err: error }, "egress.on_denied_failed");
    }
  }

  private async tunnel(who: () => Promise<Client | null>, req: IncomingMessage, client: Duplex, head: Buffer) {
    client.on("error", () => client.destroy());
    const target = parseAuthority(req.url ?? "");
    if (!target) {
      client.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
      return;
    }
    const verdict = await this.decide(await who(), target.host, target.port);
    if (!verdict.allowed) {
      client.end(refusal(target.host, verdict.reason));
      return;
    }
    const upstream = this.connectUpstream(verdict.address, target.port);
    upstream.once("connect", () => {
      upstream.setTimeout(0);
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on("error", () => {
      if (!client.destroyed && upstream.connecting) client.end("HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\n\r\n");
      else client.destroy();
    });
    client.on("close", () => upstream.destroy());
  }

  private async forward(who: () => Promise<Client | null>, req: IncomingMessage, res: ServerResponse) {
    let url: URL;
    try {
      url = new URL(req.url ?? "");
      if (url.protocol !== "http:") throw new Error("not http");
    } catch {
      res.writeHead(400, { "content-type": "text/plain", connection: "close" }).end("absolute http:// URLs only\n");
      return;
    }
    const port = url.port ? Number(url.port) : 80;
    const verdict = await this.decide(await who(), url.hostname, port);
    if (!verdict.allowed) {
      res.writeHead(403, { "content-type": "text/plain", connection: "close" });
      res.end(`blocked by the sandbox's network policy: ${normalizeHost(url.hostname)} (${verdict.reason})\n`);
      return;
    }
    const headers = { ...req.headers };
    for (const name of HOP_BY_HOP) delete headers[name];
    const upstream = request({
      host: verdict.address,
      port,
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers: { ...headers, host: url.host },
      timeout: this.connectTimeoutMs,
    });
    upstream.on("response", (answer) => {
      const answerHeaders = { ...answer.headers };
      for (const name of HOP_BY_HOP) delete answerHeaders[name];
      res.writeHead(answer.statusCode ?? 502, answerHeaders);
      answer.pipe(res);
    });
    upstream.on("timeout", () => upstream.destroy(new Error("upstream timed out")));
    upstream.on("error", () => {
      if (!res.headersSent)
        res.writeHead(502, { "content-type": "text/plain", connection: "close" }).end("bad gateway\n");
      else res.destroy();
    });
    req.pipe(upstream);
  }

  private connectUpstream(address: string, port: number): Socket {
    const socket = connect({ host: address, port });
    socket.setTimeout(this.connectTimeoutMs, () => socket.destroy(new Error("connect timed out")));
    return socket;
  }
}

/** `host:port` of a CONNECT request (IPv6 in brackets); null when malformed. */
function parseAuthority(authority: string): { host: string; port: number } | null {
  const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(authority);
  if (!match) return null;
  return { host: match[1]!, port: Number(match[2]) };
}

function refusal(host: string, reason: string): string {
  const body = `blocked by the sandbox's network policy: ${normalizeHost(host)} (${reason})\n`;
  return `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
