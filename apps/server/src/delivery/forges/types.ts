/**
 * The Forge interface: what Umbra asks of GitHub (github.com and GitHub
 * Enterprise Server) and GitLab (gitlab.com and self-managed) — pull/merge
 * requests for a task branch, and whether a commenter may direct Umbra.
 * One implementation per forge in this folder, each on its vendor's client;
 * `index.ts` matches a repository URL to the configured forge it lives on.
 *
 * Errors leave an implementation as ForgeError, whose message holds the
 * forge's answer and never a token.
 */
import type { PullRequestState } from "@repo/types";
import type { ForgeKind, ForgeSettings } from "../delivery-config";

export interface PullRequestInfo {
  number: number;
  url: string;
  state: PullRequestState;
  draft: boolean;
}

export interface OpenPullRequest {
  /** The repository's path on the forge, e.g. `acme/web` or `group/sub/project`. */
  project: string;
  /** The task branch. */
  head: string;
  /** The branch it is proposed for. */
  base: string;
  title: string;
  body: string;
}

/** Who wrote a comment, as the webhook says. */
export interface ForgeActor {
  id: number;
  login: string;
  /** GitHub's `author_association` of the comment, when the event carries it. */
  association?: string;
}

export interface Forge {
  readonly kind: ForgeKind;
  readonly settings: ForgeSettings;
  /** The open or closed pull request from `head`, if there is one. */
  findPullRequest(project: string, head: string): Promise<PullRequestInfo | null>;
  /** Opens a draft pull request. */
  openPullRequest(request: OpenPullRequest): Promise<PullRequestInfo>;
  /** Replaces the description of pull request `number`. */
  updatePullRequest(project: string, number: number, body: string): Promise<PullRequestInfo>;
  /** Whether `actor` may change the repository, so that their comment may start a turn. */
  canDirect(project: string, actor: ForgeActor): Promise<boolean>;
}

export class ForgeError extends Error {
  constructor(
    readonly kind: ForgeKind,
    message: string,
    /** The HTTP status the forge answered, if it answered. */
    readonly status: number | null,
  ) {
    super(message);
    this.name = "ForgeError";
  }
}

/**
 * The repository path of `repoUrl` on the forge at `settings.url`, or null
 * when the URL is elsewhere. http(s) URLs match on host and port; ssh URLs
 * (`git@host:path`, `ssh://git@host[:port]/path`) on the host name.
 */
export function projectOnForge(settings: ForgeSettings, repoUrl: string): string | null {
  const forge = new URL(settings.url);
  const parsed = parseRemote(repoUrl.trim());
  if (!parsed) return null;
  const sameHost =
    parsed.kind === "http"
      ? parsed.host === forge.host.toLowerCase()
      : parsed.host.split(":")[0] === forge.hostname.toLowerCase();
  if (!sameHost) return null;
  const prefix = forge.pathname.replace(/^\/+|\/+$/g, "");
  let path = parsed.path.replace(/^\/+|\/+$/g, "").replace(/\.git$/, "");
  if (prefix && parsed.kind === "http") {
    if (!path.startsWith(`${prefix}/`)) return null;
    path = path.slice(prefix.length + 1);
  }
  const segments = path.split("/").filter(Boolean);
  if (settings.kind === "github" ? segments.length !== 2 : segments.length < 2) return null;
  return segments.join("/");
}

function parseRemote(url: string): { kind: "http" | "ssh"; host: string; path: string } | null {
  if (/^https?:\/\//i.test(url) && URL.canParse(url)) {
    const parsed = new URL(url);
    return { kind: "http", host: parsed.host.toLowerCase(), path: decodeURIComponent(parsed.pathname) };
  }
  if (/^ssh:\/\//i.test(url) && URL.canParse(url)) {
    const parsed = new URL(url);
    return { kind: "ssh", host: parsed.hostname.toLowerCase(), path: decodeURIComponent(parsed.pathname) };
  }
  const scp = /^[\w.-]+@([\w.-]+):(.+)$/.exec(url);
  return scp ? { kind: "ssh", host: scp[1]!.toLowerCase(), path: scp[2]! } : null;
}
