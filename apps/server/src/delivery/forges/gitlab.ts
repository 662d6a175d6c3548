/**
 * GitLab (gitlab.com and self-managed) through @gitbeaker/rest. A merge
 * request is a draft when its title starts with "Draft:", which is how the
 * API opens one. Whether a commenter may direct Umbra is their access level
 * on the project (Developer or above), asked of the API, because GitLab's
 * note events do not carry it. The client is loaded on first use, so a server
 * without GitLab never loads it.
 */
import type { Gitlab } from "@gitbeaker/rest";
import type { ForgeSettings } from "../delivery-config";
import { type Forge, type ForgeActor, ForgeError, type OpenPullRequest, type PullRequestInfo } from "./types";

/** GitLab's Developer access level: may push to the project. */
const DEVELOPER_ACCESS = 30;

interface GitlabMergeRequest {
  iid: number;
  web_url: string;
  state: string;
  draft?: boolean;
  work_in_progress?: boolean;
}

export class GitlabForge implements Forge {
  readonly kind = "gitlab" as const;
  private client: Promise<InstanceType<typeof Gitlab>> | null = null;

  constructor(readonly settings: ForgeSettings) {}

  private get api(): Promise<InstanceType<typeof Gitlab>> {
    this.client ??= import("@gitbeaker/rest").then(
      ({ Gitlab }) =>
        new Gitlab({ host: this.settings.apiUrl, token: this.settings.token ?? "", queryTimeout: 30_000 }),
    );
    return this.client;
  }

  async findPullRequest(project: string, head: string): Promise<PullRequestInfo | null> {
    const api = await this.api;
    const list = (await this.call(() =>
      api.MergeRequests.all({ projectId: project, sourceBranch: head, perPage: 10, maxPages: 1 }),
    )) as unknown as GitlabMergeRequest[];
    const open = list.find((mr) => mr.state === "opened") ?? list[0];
    return open ? toInfo(open) : null;
  }

  async openPullRequest(request: OpenPullRequest): Promise<PullRequestInfo> {
    const api = await this.api;
    const created = await this.call(() =>
      api.MergeRequests.create(request.project, request.head, request.base, `Draft: ${request.title}`, {
        description: request.body,
      }),
    );
    return toInfo(created as unknown as GitlabMergeRequest);
  }

  async updatePullRequest(project: string, number: number, body: string): Promise<PullRequestInfo> {
    const api = await this.api;
    const updated = await this.call(() => api.MergeRequests.edit(project, number, { description: body }));
    return toInfo(updated as unknown as GitlabMergeRequest);
  }

  async canDirect(project: string, actor: ForgeActor): Promise<boolean> {
    try {
      const api = await this.api;
      const member = await api.ProjectMembers.show(project, actor.id, { includeInherited: true });
      return Number((member as { access_level?: number }).access_level) >= DEVELOPER_ACCESS;
    } catch (error) {
      if (statusOf(error) === 404) return false;
      throw toForgeError(error);
    }
  }

  private async call<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (error) {
      throw toForgeError(error);
    }
  }
}

function statusOf(error: unknown): number | null {
  const cause = (error as { cause?: { response?: { status?: number } } }).cause;
  return cause?.response?.status ?? null;
}

function toForgeError(error: unknown): ForgeError {
  const status = statusOf(error);
  const description = (error as { cause?: { description?: unknown } }).cause?.description;
  const detail = typeof description === "string" ? description : description ? JSON.stringify(description) : "";
  return new ForgeError(
    "gitlab",
    status === null
      ? `GitLab cannot be reached (${(error as Error).message})`
      : `GitLab answered ${status}${detail ? `: ${detail}` : ""}`,
    status,
  );
}

function toInfo(mr: GitlabMergeRequest): PullRequestInfo {
  return {
    number: mr.iid,
    url: mr.web_url,
    state: mr.state === "merged" ? "merged" : mr.state === "opened" ? "open" : "closed",
    draft: Boolean(mr.draft ?? mr.work_in_progress),
  };
}
