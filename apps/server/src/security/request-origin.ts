/**
 * The guard against DNS rebinding and cross-site requests, for HTTP routes
 * and the Socket.IO handshake alike.
 *
 * A web page the user visits can make the browser talk to a server on
 * loopback: by rebinding its own name to 127.0.0.1 (the request then
 * carries `Host: attacker.example`) or by sending a request from its own
 * origin (it carries `Origin: https://attacker.example`). With no token and
 * a shell agent, creating a task is running a command on the host. So:
 * - a request whose Host names a host not on the allow-list is refused;
 * - a request carrying an Origin whose host is not on the allow-list (or
 *   the opaque origin `null`) is refused.
 * The allow-list: HOST, localhost, 127.0.0.1, [::1], ALLOWED_HOSTS, and when
 * HOST is a wildcard address the machine's own names and addresses. The
 * same-origin web UI sends an allowed Origin; clients that are not browsers
 * send no Origin and an allowed Host, and keep working. Ports are not
 * compared: rebinding is about names.
 */
import type { IncomingHttpHeaders } from "node:http";
import { hostname as machineName, networkInterfaces } from "node:os";
import type { FastifyInstance } from "fastify";
import { ForbiddenError } from "../errors";

const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]"]);

export class HostAllowList {
  private readonly exact = new Set<string>();
  private readonly suffixes: string[] = [];

  /** @param patterns host names or addresses (a port is ignored), or `*.domain` for any subdomain */
  constructor(patterns: Iterable<string>) {
    for (const pattern of patterns) {
      if (pattern.startsWith("*.")) this.suffixes.push(pattern.slice(1).toLowerCase());
      else this.exact.add(normalizeHost(pattern));
    }
  }

  /** The allow-list of a server listening on `host`, extended by `extra` (ALLOWED_HOSTS). */
  static forServer(host: string, extra: readonly string[]): HostAllowList {
    const names = ["localhost", "127.0.0.1", "::1", ...extra];
    if (WILDCARD_HOSTS.has(host)) {
      names.push(machineName());
      for (const addresses of Object.values(networkInterfaces())) {
        for (const address of addresses ?? []) names.push(address.address.split("%")[0]!);
      }
    } else {
      names.push(host);
    }
    return new HostAllowList(names);
  }

  /** Whether `host` (a Host header value or a host name, with or without a port) is allowed. */
  allows(host: string): boolean {
    const name = hostOf(host);
    if (name === null) return false;
    return this.exact.has(name) || this.suffixes.some((suffix) => name.endsWith(suffix));
  }

  /** Why a request with these headers is refused, or null when it is allowed. */
  refusal(headers: IncomingHttpHeaders): string | null {
    const host = headers.host;
    // Browsers always send Host; a request without one cannot come from a rebound page.
    if (host !== undefined && !this.allows(host)) {
      return `requests for host ${JSON.stringify(host)} are refused (DNS-rebinding guard); add it to ALLOWED_HOSTS to serve it`;
    }
    const origin = headers.origin;
    if (origin !== undefined && !this.allowsOrigin(origin)) {
      return `cross-site request from origin ${JSON.stringify(origin)} refused; add its host to ALLOWED_HOSTS to allow it`;
    }
    return null;
  }

  private allowsOrigin(origin: string): boolean {
    if (!URL.canParse(origin)) return false; // includes the opaque origin "null"
    const url = new URL(origin);
    return (url.protocol === "http:" || url.protocol === "https:") && this.allows(url.host);
  }
}

/** Refuses every HTTP request the allow-list refuses, before authentication and routing. */
export function installRequestOriginGuard(fastify: FastifyInstance, allowList: HostAllowList): void {
  fastify.addHook("onRequest", async (request) => {
    const refusal = allowList.refusal(request.headers);
    if (refusal) throw new ForbiddenError(refusal);
  });
}

/** The host name of a Host value or an address, lower case, IPv6 in brackets, without port or trailing dot. */
function hostOf(value: string): string | null {
  const candidate = value.includes(":") && !value.includes("[") && !/^[^:]*:\d+$/.test(value) ? `[${value}]` : value;
  if (!URL.canParse(`http://${candidate}`)) return null;
  const url = new URL(`http://${candidate}`);
  if (url.username || url.password || url.pathname !== "/" || url.search || url.hash) return null;
  return url.hostname.replace(/\.$/, "");
}

function normalizeHost(pattern: string): string {
  return hostOf(pattern) ?? pattern.toLowerCase();
}
