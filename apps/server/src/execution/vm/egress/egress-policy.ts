/**
 * What a sandbox may connect to: SANDBOX_NETWORK (`off`, `allowlist`, `on`)
 * and the allowlist of SANDBOX_ALLOWED_DOMAINS, decided for one destination.
 *
 * Entries: `example.com` (that host), `*.example.com` or `.example.com` (its
 * subdomains), either with `:port` to allow only that port; IP literals
 * (`127.0.0.1:8080`, `[::1]:8080`) likewise.
 *
 * Invariants:
 * - An internal address (loopback, private, link-local, CGNAT, unspecified,
 *   multicast; IPv4 and IPv6) is reachable only through an entry that names
 *   exactly that host and port — never through a wildcard, a port-less entry
 *   or mode `on`. This is how a model endpoint on host loopback
 *   (ANTHROPIC_BASE_URL=http://127.0.0.1:8080) is allowed while the Umbra API,
 *   Postgres and other sandboxes on the same loopback are not; and a public
 *   name that resolves to an internal address (DNS rebinding) is refused.
 * - The decision is made on the address that will be connected to, after
 *   resolution, so it cannot change between the check and the connection.
 */
import { isIP } from "node:net";

export const NETWORK_MODES = ["off", "allowlist", "on"] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];

export interface NetworkPolicy {
  mode: NetworkMode;
  /** Allowlist entries (see module comment); used in mode `allowlist`, and for internal addresses in `on`. */
  allowedDomains: string[];
}

interface Entry {
  host: string;
  /** Subdomains of `host` (not `host` itself). */
  wildcard: boolean;
  port: number | null;
}

/** Lower case, no trailing dot, IPv6 without brackets. */
export function normalizeHost(host: string): string {
  let value = host.trim().toLowerCase();
  if (value.startsWith("[") && value.endsWith("]")) value = value.slice(1, -1);
  return value.replace(/\.$/, "");
}

/** Parses one entry; null for an entry that is not a host name or address. */
export function parseEntry(raw: string): Entry | null {
  let text = raw.trim().toLowerCase();
  if (!text) return null;
  let port: number | null = null;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) {
    text = bracketed[1]!;
    port = bracketed[2] ? Number(bracketed[2]) : null;
  } else if (isIP(text) !== 6) {
    const withPort = /^(.*):(\d+)$/.exec(text);
    if (withPort) {
      text = withPort[1]!;
      port = Number(withPort[2]);
    }
  }
  if (port !== null && (port < 1 || port > 65535)) return null;
  let wildcard = false;
  if (text.startsWith("*.")) {
    wildcard = true;
    text = text.slice(2);
  } else if (text.startsWith(".")) {
    wildcard = true;
    text = text.slice(1);
  }
  const host = normalizeHost(text);
  if (!host || (!isIP(host) && !/^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/.test(host))) {
    return null;
  }
  if (wildcard && isIP(host)) return null;
  return { host, wildcard, port };
}

/** The host (and port, when not the scheme's default) of a URL, as an allowlist entry. */
export function entryForUrl(url: string): string | null {
  try {
    const parsed = new URL(url);
    const port = parsed.port || (parsed.protocol === "http:" ? "80" : parsed.protocol === "https:" ? "443" : "");
    return port ? `${parsed.hostname}:${port}` : parsed.hostname;
  } catch {
    return null;
  }
}

function ipv4Internal(address: string): boolean {
  const [a = 0, b = 0] = address.split(".").map(Number);
  return (
    a === 0 ||
    a === 10 ||
    a === 127 ||
    (a === 100 && b >= 64 && b <= 127) ||
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    (a === 198 && (b === 18 || b === 19)) ||
    a >= 224
  );
}

/** True for addresses that are not on the public internet. */
export function isInternalAddress(address: string): boolean {
  const host = normalizeHost(address);
  const kind = isIP(host);
  if (kind === 4) return ipv4Internal(host);
  if (kind !== 6) return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host);
  if (mapped) return ipv4Internal(mapped[1]!);
  if (host === "::" || host === "::1") return true;
  const first = Number.parseInt(host.split(":")[0] || "0", 16);
  return (first & 0xfe00) === 0xfc00 || (first & 0xffc0) === 0xfe80 || (first & 0xff00) === 0xff00;
}

export class EgressPolicy {
  private readonly entries: Entry[];

  constructor(readonly policy: NetworkPolicy) {
    this.entries = policy.allowedDomains.map(parseEntry).filter((entry): entry is Entry => entry !== null);
  }

  /**
   * Whether the name may be asked for at all (before resolving it): false
   * means denied whatever it resolves to.
   */
  admitsName(host: string, port: number): boolean {
    if (this.policy.mode === "off") return false;
    if (this.policy.mode === "on") return true;
    const name = normalizeHost(host);
    return this.entries.some((entry) => this.matches(entry, name, port));
  }

  /** Whether `address` (what `host` resolved to) may be connected to on `port`. */
  admitsAddress(host: string, address: string, port: number): boolean {
    if (!this.admitsName(host, port)) return false;
    if (!isInternalAddress(address)) return true;
    const name = normalizeHost(host);
    return this.entries.some((entry) => !entry.wildcard && entry.port === port && entry.host === name);
  }

  private matches(entry: Entry, name: string, port: number): boolean {
    if (entry.port !== null && entry.port !== port) return false;
    if (entry.wildcard) return name.endsWith(`.${entry.host}`);
    return name === entry.host;
  }
}

/** Registries that dependency installation commonly needs. */
export const PACKAGE_REGISTRIES: readonly string[] = [
  "registry.npmjs.org",
  "registry.yarnpkg.com",
  "pypi.org",
  "files.pythonhosted.org",
  "crates.io",
  "static.crates.io",
  "index.crates.io",
  "proxy.golang.org",
  "sum.golang.org",
  "rubygems.org",
  "repo.maven.apache.org",
  "repo1.maven.org",
  "api.nuget.org",
];

export interface ModelEndpoints {
  anthropicBaseUrl?: string;
  openaiBaseUrl?: string;
  /** LLM_BASE_URL: an OpenAI-compatible endpoint (or a proxy in front of a vendor). */
  llmBaseUrl?: string;
}

/**
 * The default allowlist: the configured model endpoints (each base URL's host
 * and port; a vendor's API host where its base URL is not set), plus the
 * package registries.
 */
export function defaultAllowedDomains(models: ModelEndpoints): string[] {
  const endpoints = [
    models.anthropicBaseUrl ? entryForUrl(models.anthropicBaseUrl) : "api.anthropic.com",
    models.openaiBaseUrl ? entryForUrl(models.openaiBaseUrl) : "api.openai.com",
    models.llmBaseUrl ? entryForUrl(models.llmBaseUrl) : null,
  ].filter((entry): entry is string => entry !== null);
  return [...new Set([...endpoints, ...PACKAGE_REGISTRIES])];
}
