/**
 * A GitHub Enterprise Server on loopback, as far as Umbra uses one: git's
 * smart HTTP protocol at `/<owner>/<repo>.git` behind basic auth with the
 * token (user `x-access-token`), and the REST API under `/api/v3` for pull
 * requests (list by head, create, update), answering 401 without the token.
 * Every API request is recorded; pull requests live in memory.
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import { sign } from "@octokit/webhooks-methods";
import { listenOnLoopback, type SmartGitHandler, smartGitHandler } from "./git-smart-http";

export interface ApiRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  body: Record<string, unknown> | null;
  authorization: string | undefined;
}

export interface FakePull {
  number: number;
  owner: string;
  repo: string;
  head: string;
  base: string;
  title: string;
  body: string;
  draft: boolean;
  state: "open" | "closed";
  merged: boolean;
}

export interface FakeGithub {
  /** GITHUB_URL, e.g. http://127.0.0.1:41234 */
  url: string;
  git: SmartGitHandler;
  /** Clone URL of `owner/repo`. */
  repoUrl(project: string): string;
  requests: ApiRequest[];
  pulls: FakePull[];
  /** Answers the next `count` API requests with `status`. */
  failNext(status: number, count?: number): void;
  close(): Promise<void>;
}

export async function startFakeGithub(token: string): Promise<FakeGithub> {
  const git = smartGitHandler({ username: "x-access-token", password: token });
  const requests: ApiRequest[] = [];
  const pulls: FakePull[] = [];
  let failures: { status: number; count: number } | null = null;
  let origin = "";

  const pullJson = (pull: FakePull) => ({
    number: pull.number,
    html_url: `${origin}/${pull.owner}/${pull.repo}/pull/${pull.number}`,
    state: pull.state,
    draft: pull.draft,
    merged: pull.merged,
    merged_at: pull.merged ? "2026-01-01T00:00:00Z" : null,
    title: pull.title,
    body: pull.body,
    head: { ref: pull.head },
    base: { ref: pull.base },
  });

  const api = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? "/", origin);
    const text = await readBody(request);
    const record: ApiRequest = {
      method: request.method ?? "",
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      body: text ? (JSON.parse(text) as Record<string, unknown>) : null,
      authorization: request.headers.authorization,
    };
    requests.push(record);
    const send = (status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (failures && failures.count > 0) {
      failures.count--;
      return send(failures.status, { message: "the fake forge was told to fail" });
    }
    if (request.headers.authorization !== `token ${token}` && request.headers.authorization !== `Bearer ${token}`) {
      return send(401, { message: "Bad credentials" });
    }
    const list = /^\/api\/v3\/repos\/([^/]+)\/([^/]+)\/pulls$/.exec(url.pathname);
    const one = /^\/api\/v3\/repos\/([^/]+)\/([^/]+)\/pulls\/(\d+)$/.exec(url.pathname);
    if (list && request.method === "GET") {
      const [, owner, repo] = list;
      const head = url.searchParams.get("head");
      return send(
        200,
        pulls
          .filter((p) => p.owner === owner && p.repo === repo && (!head || `${owner}:${p.head}` === head))
          .map(pullJson),
      );
    }
    if (list && request.method === "POST") {
      const [, owner, repo] = list;
      const body = record.body ?? {};
      if (pulls.some((p) => p.owner === owner && p.repo === repo && p.head === body.head && p.state === "open")) {
        return send(422, { message: "Validation Failed", errors: [{ message: "A pull request already exists" }] });
      }
      const pull: FakePull = {
        number: pulls.filter((p) => p.owner === owner && p.repo === repo).length + 1,
        owner: owner!,
        repo: repo!,
        head: String(body.head),
        base: String(body.base),
        title: String(body.title),
        body: String(body.body ?? ""),
        draft: body.draft === true,
        state: "open",
        merged: false,
      };
      pulls.push(pull);
      return send(201, pullJson(pull));
    }
    if (one && request.method === "PATCH") {
      const pull = pulls.find((p) => p.owner === one[1] && p.repo === one[2] && p.number === Number(one[3]));
      if (!pull) return send(404, { message: "Not Found" });
      const body = record.body ?? {};
      if (typeof body.body === "string") pull.body = body.body;
      if (typeof body.title === "string") pull.title = body.title;
      return send(200, pullJson(pull));
    }
    return send(404, { message: "Not Found" });
  };

  const server = await listenOnLoopback((request, response) => {
    if (git.handle(request, response)) return;
    if ((request.url ?? "").startsWith("/api/v3/")) {
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
    pulls,
    failNext(status, count = 1) {
      failures = { status, count };
    },
    close: server.close,
  };
}

/** Headers of a GitHub webhook delivery, signed with `secret`. */
export async function githubWebhookHeaders(
  secret: string,
  event: string,
  body: string,
  deliveryId: string,
): Promise<Record<string, string>> {
  return {
    "content-type": "application/json",
    "x-github-event": event,
    "x-github-delivery": deliveryId,
    "x-hub-signature-256": await sign(secret, body),
  };
}

export function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}
