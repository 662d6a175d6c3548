/**
 * Webhook deliveries as GitHub and GitLab send them: payloads with the
 * fields their documentation gives (trimmed to what matters), signed or
 * tokened, posted to a test server.
 */
import { randomUUID } from "node:crypto";
import { sign } from "@octokit/webhooks-methods";
import type { TestServer } from "./server";

export interface WebhookAnswer {
  status: number;
  body: { status?: string; error?: { code: string; message: string } } | null;
}

export interface GithubRepo {
  fullName: string;
  cloneUrl: string;
}

/** Posts a GitHub delivery; `secret: null` sends it unsigned. */
export async function postGithub(
  t: Pick<TestServer, "url">,
  event: string,
  payload: unknown,
  options: { secret: string | null; deliveryId?: string; body?: string },
): Promise<WebhookAnswer> {
  const body = options.body ?? JSON.stringify(payload);
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "x-github-event": event,
    "x-github-delivery": options.deliveryId ?? randomUUID(),
  };
  if (options.secret !== null) headers["x-hub-signature-256"] = await sign(options.secret, body);
  const response = await fetch(`${t.url}/api/webhooks/github`, { method: "POST", headers, body });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Posts a GitLab delivery with `token` in X-Gitlab-Token (none when null). */
export async function postGitlab(
  t: TestServer,
  event: string,
  payload: unknown,
  options: { token: string | null; deliveryId?: string },
): Promise<WebhookAnswer> {
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "x-gitlab-event": event,
    "x-gitlab-event-uuid": options.deliveryId ?? randomUUID(),
  };
  if (options.token !== null) headers["x-gitlab-token"] = options.token;
  const response = await fetch(`${t.url}/api/webhooks/gitlab`, {
    method: "POST",
    headers,
    body: JSON.stringify(payload),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

const repository = (repo: GithubRepo) => ({
  id: 1,
  name: repo.fullName.split("/")[1],
  full_name: repo.fullName,
  clone_url: repo.cloneUrl,
  private: true,
});
const githubUser = (login: string, id = 1001) => ({ login, id, type: "User" });

/** `issue_comment` (created) on pull request `number`. */
export function githubPullComment(
  repo: GithubRepo,
  number: number,
  body: string,
  author = { login: "alice", association: "COLLABORATOR" },
) {
  return {
    action: "created",
    issue: { number, title: "A pull request", body: "", pull_request: { url: "https://example.test/pulls/1" } },
    comment: { id: 5, body, user: githubUser(author.login), author_association: author.association },
    repository: repository(repo),
    sender: githubUser(author.login),
  };
}

/** `pull_request_review_comment` (created) on a line of pull request `number`. */
export function githubReviewComment(repo: GithubRepo, number: number, body: string, path: string, line: number) {
  return {
    action: "created",
    comment: { id: 6, body, path, line, user: githubUser("bob", 1002), author_association: "MEMBER" },
    pull_request: { number, head: { ref: "x" } },
    repository: repository(repo),
    sender: githubUser("bob", 1002),
  };
}

/** `pull_request` closed (merged or not). */
export function githubPullClosed(repo: GithubRepo, number: number, head: string, merged: boolean, url: string) {
  return {
    action: "closed",
    number,
    pull_request: {
      number,
      html_url: url,
      state: "closed",
      merged,
      merged_at: merged ? "2026-01-01T00:00:00Z" : null,
      draft: false,
      head: { ref: head },
      base: { ref: "main" },
    },
    repository: repository(repo),
    sender: githubUser("carol", 1003),
  };
}

/** `issue_comment` (created) on issue `number`. */
export function githubIssueComment(
  repo: GithubRepo,
  issue: { number: number; title: string; body: string },
  comment: string,
  association = "OWNER",
) {
  return {
    action: "created",
    issue: { ...issue, state: "open" },
    comment: { id: 7, body: comment, user: githubUser("dana", 1004), author_association: association },
    repository: repository(repo),
    sender: githubUser("dana", 1004),
  };
}

/** `issues` labeled. */
export function githubIssueLabeled(
  repo: GithubRepo,
  issue: { number: number; title: string; body: string },
  label: string,
) {
  return {
    action: "labeled",
    issue: { ...issue, state: "open", labels: [{ name: label }] },
    label: { name: label },
    repository: repository(repo),
    sender: githubUser("erin", 1005),
  };
}

export interface GitlabProject {
  path: string;
  httpUrl: string;
}

const gitlabProject = (project: GitlabProject) => ({
  id: 42,
  path_with_namespace: project.path,
  git_http_url: project.httpUrl,
});

/** A "Note Hook" on merge request `iid`. */
export function gitlabMergeRequestNote(
  project: GitlabProject,
  iid: number,
  note: string,
  user: { id: number; username: string },
) {
  return {
    object_kind: "note",
    event_type: "note",
    user: { ...user, name: user.username },
    project: gitlabProject(project),
    object_attributes: { id: 9, note, noteable_type: "MergeRequest" },
    merge_request: { iid, source_branch: "x", target_branch: "main" },
  };
}

/** A "Merge Request Hook" with `state` (merged, closed, opened). */
export function gitlabMergeRequestEvent(
  project: GitlabProject,
  iid: number,
  state: string,
  source: string,
  url: string,
) {
  return {
    object_kind: "merge_request",
    user: { id: 3, username: "carol" },
    project: gitlabProject(project),
    object_attributes: {
      iid,
      state,
      action: state === "merged" ? "merge" : "close",
      source_branch: source,
      url,
      draft: false,
    },
  };
}

/** An "Issue Hook" whose update adds `label`. */
export function gitlabIssueLabeled(
  project: GitlabProject,
  issue: { iid: number; title: string; description: string },
  label: string,
  user: { id: number; username: string },
) {
  return {
    object_kind: "issue",
    user: { ...user, name: user.username },
    project: gitlabProject(project),
    object_attributes: { ...issue, action: "update", state: "opened" },
    labels: [{ title: label }],
    changes: { labels: { previous: [], current: [{ title: label }] } },
  };
}
