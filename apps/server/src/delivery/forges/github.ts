/**
 * GitHub and GitHub Enterprise Server through @octokit/rest. The API root is
 * api.github.com for github.com and `<GITHUB_URL>/api/v3` for Enterprise
 * (delivery-config.ts decides). Octokit's own log goes to the server's
 * logger; its errors are turned into ForgeError with the status and GitHub's
 * message only (Octokit already redacts the token from what it keeps). The
 * client is loaded on first use, so a server without GitHub never loads it.
 */
import type { Octokit } from "@octokit/rest";
import type { Logger } from "../../logger";
import type { ForgeSettings } from "../delivery-config";
import { type Forge, type ForgeActor, ForgeError, type OpenPullRequest, type PullRequestInfo } from "./types";

/** Comment authors GitHub marks as having a say in the repository. */
const DIRECTING_ASSOCIATIONS = new Set(["OWNER", "MEMBER", "COLLABORATOR"]);

interface GithubPull {
  number: number;
  html_url: string;
  state: string;
  draft?: boolean;
  merged_at?: string | null;
  merged?: boolean;
}

export class GithubForge implements Forge {
  readonly kind = "github" as const;
  private client: Promise<Octokit> | null = null;

  constructor(
    readonly settings: ForgeSettings,
    private readonly log: Logger,
  ) {}

  private get octokit(): Promise<Octokit> {
    this.client ??= import("@octokit/rest").then(
      ({ Octokit }) =>
        new Octokit({
          auth: this.settings.token,
          baseUrl: this.settings.apiUrl,
          userAgent: "umbra",
          log: {
            debug: () => {},
            info: () => {},
            warn: (message: string) => this.log.warn({ forge: "github", detail: message }, "forge.client.warning"),
            error: (message: string) => this.log.warn({ forge: "github", detail: message }, "forge.client.error"),
          },
        }),
    );
    return this.client;
  }

  async findPullRequest(project: string, head: string): Promise<PullRequestInfo | null> {
    const { owner, repo } = split(project);
    const octokit = await this.octokit;
    const { data } = await this.call(() =>
      octokit.rest.pulls.list({ owner, repo, head: `${owner}:${head}`, state: "all", per_page: 10 }),
    );
    const pulls = data as GithubPull[];
    const open = pulls.find((pull) => pull.state === "open") ?? pulls[0];
    return open ? toInfo(open) : null;
  }

  async openPullRequest(request: OpenPullRequest): Promise<PullRequestInfo> {
    const { owner, repo } = split(request.project);
    const octokit = await this.octokit;
    const { data } = await this.call(() =>
      octokit.rest.pulls.create({
        owner,
        repo,
        head: request.head,
        base: request.base,
        title: request.title,
        body: request.body,
        draft: true,
      }),
    );
    return toInfo(data as GithubPull);
  }

  async updatePullRequest(project: string, number: number, body: string): Promise<PullRequestInfo> {
    const { owner, repo } = split(project);
    const octokit = await this.octokit;
    const { data } = await this.call(() => octokit.rest.pulls.update({ owner, repo, pull_number: number, body }));
    return toInfo(data as GithubPull);
  }

  async canDirect(_project: string, actor: ForgeActor): Promise<boolean> {
    return actor.association !== undefined && DIRECTING_ASSOCIATIONS.has(actor.association.toUpperCase());
  }

  private async call<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (error) {
      const status = (error as { status?: number }).status ?? null;
      const detail = (error as { response?: { data?: { message?: string; errors?: { message?: string }[] } } }).response
        ?.data;
      const message = [detail?.message, ...(detail?.errors ?? []).map((e) => e.message)].filter(Boolean).join("; ");
      throw new ForgeError(
        "github",
        status === null
          ? `GitHub cannot be reached (${(error as Error).message})`
          : `GitHub answered ${status}${message ? `: ${message}` : ""}`,
        status,
      );
    }
  }
}

function split(project: string): { owner: string; repo: string } {
  const [owner, repo] = project.split("/");
  return { owner: owner!, repo: repo! };
}

function toInfo(pull: GithubPull): PullRequestInfo {
  const merged = Boolean(pull.merged || pull.merged_at);
  return {
    number: pull.number,
    url: pull.html_url,
    state: merged ? "merged" : pull.state === "open" ? "open" : "closed",
    draft: Boolean(pull.draft),
  };
}
