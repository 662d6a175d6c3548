/**
 * Which repository URLs the server will fetch. The server runs git against
 * whatever URL a user gives it, from inside the host's network, so:
 * - a URL whose host is, or resolves to, a loopback, link-local, private or
 *   otherwise non-public address (127.0.0.1, 10.x, 169.254.169.254, [::1],
 *   a name that resolves there, …) is refused unless its host is listed in
 *   ALLOWED_REPO_HOSTS (names, addresses or CIDR ranges) or is a configured
 *   forge (GITHUB_URL, GITLAB_URL);
 * - local paths and file:// URLs are refused unless ALLOW_LOCAL_REPOS.
 * Credentials in the URL are refused before this, by RepoUrlSchema.
 *
 * Names are resolved the way git will resolve them (getaddrinfo), every
 * address counts. A name that does not resolve now is let through: git
 * fails on it with its own message, or it is an ssh alias. The check runs
 * when a task is created; it does not pin the address git connects to.
 */
import { lookup as dnsLookup } from "node:dns/promises";
import ipaddr from "ipaddr.js";
import { ValidationError } from "../errors";

/** Resolves a host name to every address it has (IPv4 and IPv6). */
export type ResolveHost = (hostname: string) => Promise<string[]>;

export const resolveWithSystem: ResolveHost = async (hostname) =>
  (await dnsLookup(hostname, { all: true, verbatim: true })).map((entry) => entry.address);

/** How long a lookup may take before the name counts as unresolvable, in ms. */
const LOOKUP_TIMEOUT_MS = 5_000;

export interface RepoUrlPolicyOptions {
  allowLocalRepos: boolean;
  /** ALLOWED_REPO_HOSTS: host names, addresses, CIDR ranges. */
  allowedRepoHosts: readonly string[];
  /** Forge URLs (GITHUB_URL, GITLAB_URL); their hosts are allowed. */
  forgeUrls: readonly string[];
  resolve?: ResolveHost;
}

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

export class RepoUrlPolicy {
  private readonly names = new Set<string>();
  private readonly ranges: Range[] = [];
  private readonly resolve: ResolveHost;

  constructor(private readonly options: RepoUrlPolicyOptions) {
    this.resolve = options.resolve ?? resolveWithSystem;
    const hosts = [...options.allowedRepoHosts, ...options.forgeUrls.map((url) => new URL(url).hostname)];
    for (const host of hosts) {
      const bare = withoutPort(host.toLowerCase());
      if (bare.includes("/") && ipaddr.isValidCIDR(bare)) this.ranges.push(ipaddr.parseCIDR(bare));
      else if (ipaddr.isValid(bare)) this.ranges.push(singleAddress(bare));
      else this.names.add(bare.replace(/\.$/, ""));
    }
  }

  /** Throws ValidationError with the reason when the server must not fetch `repoUrl`. */
  async check(repoUrl: string): Promise<void> {
    const target = parseRepoUrl(repoUrl);
    if (target.kind === "local") {
      if (!this.options.allowLocalRepos) {
        throw new ValidationError(
          "repoUrl: local repositories (absolute paths and file:// URLs) are disabled on this server; set ALLOW_LOCAL_REPOS=1 to allow them",
        );
      }
      return;
    }
    if (this.names.has(target.host)) return;
    // RFC 6761: localhost and its subdomains are loopback whatever a resolver says.
    const addresses = isLocalhostName(target.host) ? ["127.0.0.1"] : await this.addressesOf(target.host);
    for (const address of addresses) {
      const parsed = ipaddr.process(address);
      if (this.ranges.some((range) => sameKind(parsed, range) && parsed.match(range))) continue;
      const range = parsed.range();
      if (range !== "unicast") {
        const where = addresses.length === 1 && address === target.host ? "" : ` (it resolves to ${address})`;
        throw new ValidationError(
          `repoUrl: host ${target.host}${where} is a ${describeRange(range)} address; repositories on loopback, link-local or private addresses are refused unless the host is listed in ALLOWED_REPO_HOSTS`,
        );
      }
    }
  }

  private async addressesOf(host: string): Promise<string[]> {
    if (ipaddr.isValid(host)) return [host];
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string[]>((resolve) => {
      timer = setTimeout(() => resolve([]), LOOKUP_TIMEOUT_MS);
    });
    try {
      return await Promise.race([this.resolve(host).catch(() => []), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

type RepoTarget = { kind: "local" } | { kind: "remote"; host: string };

/** The host a repository URL points at (lower case, IPv6 without brackets), or `local`. */
export function parseRepoUrl(repoUrl: string): RepoTarget {
  const value = repoUrl.trim();
  if (value.startsWith("/") || /^file:/i.test(value)) return { kind: "local" };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value) && URL.canParse(value)) {
    return { kind: "remote", host: stripBrackets(new URL(value).hostname).replace(/\.$/, "") };
  }
  // scp-like: [user@]host:path
  const scp = /^(?:[^@/]+@)?(\[[^\]]+\]|[^:/]+):/.exec(value);
  if (scp) return { kind: "remote", host: stripBrackets(scp[1]!.toLowerCase()).replace(/\.$/, "") };
  throw new ValidationError("repoUrl must be a git URL (https, ssh, git, file) or an absolute path");
}

/** `[::1]:22` → `::1`, `host:22` → `host`; a bare IPv6 address or a CIDR range stays as it is. */
function withoutPort(entry: string): string {
  if (entry.startsWith("[")) return entry.slice(1, entry.indexOf("]"));
  return entry.split(":").length === 2 ? entry.split(":")[0]! : entry;
}

function stripBrackets(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

function isLocalhostName(host: string): boolean {
  return host === "localhost" || host.endsWith(".localhost");
}

function singleAddress(address: string): Range {
  const parsed = ipaddr.process(address);
  return [parsed, parsed.kind() === "ipv4" ? 32 : 128];
}

function sameKind(address: ipaddr.IPv4 | ipaddr.IPv6, range: Range): boolean {
  return address.kind() === range[0].kind();
}

function describeRange(range: string): string {
  const names: Record<string, string> = {
    loopback: "loopback",
    private: "private",
    uniqueLocal: "private (unique local)",
    linkLocal: "link-local",
    unspecified: "unspecified",
    carrierGradeNat: "shared (carrier-grade NAT)",
    multicast: "multicast",
    broadcast: "broadcast",
    reserved: "reserved",
  };
  return names[range] ?? `non-public (${range})`;
}
