/**
 * A self-managed GitLab on loopback, as far as Umbra uses one: git's smart
 * HTTP protocol at `/<group>/<project>.git` behind basic auth with the token
 * (user `oauth2`), and the REST API under `/api/v4` for merge requests
 * (list by source branch, create, edit) and project membership, answering
 * 401 without the token (`PRIVATE-TOKEN` header). Every API request is
 * recorded; merge requests and members live in memory.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { type ApiRequest, readBody } from "./fake-github";
import { listenOnLoopback, type SmartGitHandler, smartGitHandler } from "./git-smart-http";

export interface FakeMergeRequest {
  iid: number;
  project: string;
  sourceBranch: string;
  targetBranch: string;
  title: string;
  description: string;
  state: "opened" | "closed" | "merged";
}

export interface FakeGitlab {
  /** GITLAB_URL */
  url: string;
  git: SmartGitHandler;
  repoUrl(project: string): string;
  requests: ApiRequest[];
  mergeRequests: FakeMergeRequest[];
  /** Access levels of project members by user id (30 = Developer). */
  members: Map<number, number>;
  close(): Promise<void>;
}

export async function startFakeGitlab(token: string): Promise<FakeGitlab> {
  const git = smartGitHandler({ username: "oauth2", password: token });
  const requests: ApiRequest[] = [];
  const mergeRequests: FakeMergeRequest[] = [];
  const members = new Map<number, number>();
  let origin = "";

  const mrJson = (mr: FakeMergeRequest) => ({
    iid: mr.iid,
    web_url: `${origin}/${mr.project}/-/merge_requests/${mr.iid}`,
    state: mr.state,
    draft: mr.title.startsWith("Draft:"),
    title: mr.title,
    description: mr.description,
    source_branch: mr.sourceBranch,
    target_branch: mr.targetBranch,
  });

  const api = async (request: IncomingMessage, response: ServerResponse) => {
    // The project id is the URL-encoded path, e.g. group%2Fweb.
    const url = new URL(request.url ?? "/", origin);
    const text = await readBody(request);
    const record: ApiRequest = {
      method: request.method ?? "",
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      body: text ? (JSON.parse(text) as Record<string, unknown>) : null,
      authorization: request.headers["private-token"] as string | undefined,
    };
    requests.push(record);
    const send = (status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (request.headers["private-token"] !== token) return send(401, { message: "401 Unauthorized" });
    const raw = (request.url ?? "").split("?")[0]!;
    const list = /^\/api\/v4\/projects\/([^/]+)\/merge_requests$/.exec(raw);
    const one = /^\/api\/v4\/projects\/([^/]+)\/merge_requests\/(\d+)$/.exec(raw);
    const member = /^\/api\/v4\/projects\/([^/]+)\/members\/all\/(\d+)$/.exec(raw);
    if (list && request.method === "GET") {
      const project = decodeURIComponent(list[1]!);
      const source = url.searchParams.get("source_branch");
      return send(
        200,
        mergeRequests.filter((mr) => mr.project === project && (!source || mr.sourceBranch === source)).map(mrJson),
      );
    }
    if (list && request.method === "POST") {
      const body = record.body ?? {};
      const mr: FakeMergeRequest = {
        iid: mergeRequests.length + 1,
        project: decodeURIComponent(list[1]!),
        sourceBranch: String(body.source_branch),
        targetBranch: String(body.target_branch),
        title: String(body.title),
        description: String(body.description ?? ""),
        state: "opened",
      };
      mergeRequests.push(mr);
      return send(201, mrJson(mr));
    }
    if (one && request.method === "PUT") {
      const mr = mergeRequests.find((m) => m.project === decodeURIComponent(one[1]!) && m.iid === Number(one[2]));
      if (!mr) return send(404, { message: "404 Not found" });
      const body = record.body ?? {};
      if (typeof body.description === "string") mr.description = body.description;
      return send(200, mrJson(mr));
    }
    if (member && request.method === "GET") {
      const level = members.get(Number(member[2]));
      return level === undefined
        ? send(404, { message: "404 Not found" })
        : send(200, { id: Number(member[2]), access_level: level });
    }
    return send(404, { message: "404 Not found" });
  };

  const server = await listenOnLoopback((request, response) => {
    if (git.handle(request, response)) return;
    if ((request.url ?? "").startsWith("/api/v4/")) {
      void api(request, response);
      return;
    }
    response.writeHead(404).end();
  });
  origin = server.origin;
  return {
    url: origin,
    git,
    repoUrl: (project) => `${origin}/${project}.git`,
    requests,
    mergeRequests,
    members,
    close: server.close,
  };
}
