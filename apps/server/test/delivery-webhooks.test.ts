import { existsSync } from "node:fs";
import { sign } from "@octokit/webhooks-methods";
import { webhookDeliveries } from "@repo/db";
import type { MessageDto } from "@repo/types";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTask, deliveryOf, getTask, heldCommand, turnEnded } from "../../../test/support/delivery";
import { type FakeGithub, startFakeGithub } from "../../../test/support/fake-github";
import { type FakeGitlab, startFakeGitlab } from "../../../test/support/fake-gitlab";
import { createRepo } from "../../../test/support/git";
import { eventually, readTask } from "../../../test/support/lifecycle";
import { SERVER_START_MS, startTestServer, type TestServer } from "../../../test/support/server";
import {
  type GithubRepo,
  type GitlabProject,
  githubIssueComment,
  githubIssueLabeled,
  githubPullClosed,
  githubPullComment,
  githubReviewComment,
  gitlabIssueLabeled,
  gitlabMergeRequestEvent,
  gitlabMergeRequestNote,
  postGithub,
  postGitlab,
} from "../../../test/support/webhooks";

const API_TOKEN = "api-token-for-people";

/** The test server with the API token on every API call (webhooks are posted without it). */
function withApiToken(t: TestServer): TestServer {
  return {
    ...t,
    api: <T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
      t.api<T>(method, path, body, { authorization: `Bearer ${API_TOKEN}`, ...headers }),
  };
}

/** Posts `body` to the GitHub webhook with the given signature header, whatever it signs. */
async function postWithSignature(t: TestServer, body: string, signature: string, deliveryId: string) {
  const response = await fetch(`${t.url}/api/webhooks/github`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-github-event": "issue_comment",
      "x-github-delivery": deliveryId,
      "x-hub-signature-256": signature,
    },
    body,
  });
  return { status: response.status, body: (await response.json()) as { error?: { code: string } } };
}

async function userMessages(t: TestServer, id: string): Promise<string[]> {
  const { messages } = (await t.api<{ messages: MessageDto[] }>("GET", `/api/tasks/${id}/messages`)).body;
  return messages.filter((m) => m.role === "user").map((m) => m.content);
}

const githubToken = "ghes-token-for-webhooks";
const githubSecret = "webhook-secret-github";
const gitlabToken = "glpat-for-webhooks";
const gitlabSecret = "webhook-token-gitlab";
let github: FakeGithub;
let gitlab: FakeGitlab;
/** One server for both forges; `t` adds the API token, webhooks go to `server` without it. */
let server: TestServer;
let t: TestServer;

beforeAll(async () => {
  github = await startFakeGithub(githubToken);
  gitlab = await startFakeGitlab(gitlabToken);
  server = await startTestServer({
    env: {
      API_TOKEN,
      GITHUB_URL: github.url,
      GITHUB_TOKEN: githubToken,
      GITHUB_WEBHOOK_SECRET: githubSecret,
      GITLAB_URL: gitlab.url,
      GITLAB_TOKEN: gitlabToken,
      GITLAB_WEBHOOK_SECRET: gitlabSecret,
      DELIVERY: "pull-request",
    },
  });
  t = withApiToken(server);
}, SERVER_START_MS);
afterAll(async () => {
  await server?.close();
  await github?.close();
  await gitlab?.close();
});

describe("GitHub webhooks", () => {
  const secret = githubSecret;

  /** A task on a new repository `acme/<name>` whose first turn opened its pull request. */
  async function taskWithPullRequest(name: string, message = "echo one > one.txt") {
    github.git.addRepo(`acme/${name}`, createRepo());
    const repo: GithubRepo = { fullName: `acme/${name}`, cloneUrl: github.repoUrl(`acme/${name}`) };
    const task = await createTask(t, { repoUrl: repo.cloneUrl, message });
    const delivery = await deliveryOf(t, task.id, (d) => d.pullRequest !== null, 60_000);
    await turnEnded(t, task.id);
    return { task, repo, number: delivery.pullRequest!.number, url: delivery.pullRequest!.url };
  }

  const patches = (name: string, number: number) =>
    github.requests.filter((r) => r.method === "PATCH" && r.path === `/api/v3/repos/acme/${name}/pulls/${number}`);

  it("runs a follow-up for a signed comment that mentions @umbra, without the API token, and refreshes the pull request", async () => {
    const { task, repo, number } = await taskWithPullRequest("comments");
    const answer = await postGithub(
      server,
      "issue_comment",
      githubPullComment(repo, number, "@umbra echo two >> one.txt"),
      { secret },
    );
    expect(answer).toEqual({ status: 202, body: { status: "accepted" } });
    await eventually(async () => (await userMessages(t, task.id)).length === 2, 60_000);
    await turnEnded(t, task.id);
    expect((await userMessages(t, task.id))[1]).toBe(
      "echo two >> one.txt\n\n# From a review comment by @alice on the pull request.",
    );
    await eventually(async () => patches("comments", number).length === 1, 60_000);
    expect(github.git.requests.length).toBeGreaterThan(0);

    const review = await postGithub(
      server,
      "pull_request_review_comment",
      githubReviewComment(repo, number, "@umbra: echo three >> one.txt", "one.txt", 2),
      { secret },
    );
    expect(review.status).toBe(202);
    await eventually(async () => (await userMessages(t, task.id)).length === 3, 60_000);
    expect((await userMessages(t, task.id))[2]).toBe(
      "echo three >> one.txt\n\n# From a review comment by @bob on one.txt line 2 on the pull request.",
    );
    await turnEnded(t, task.id);
    await eventually(async () => patches("comments", number).length === 2, 60_000);
  }, 150_000);

  it("waits for a running turn to end before it sends a comment's follow-up", async () => {
    const held = heldCommand("echo held > held.txt");
    const { task, repo, number } = await taskWithPullRequest("busy");
    const followUp = await t.api<{ task: { status: string } }>("POST", `/api/tasks/${task.id}/messages`, {
      message: held.command,
    });
    expect(followUp.status).toBe(202);
    const answer = await postGithub(
      server,
      "issue_comment",
      githubPullComment(repo, number, "@umbra echo after > after.txt"),
      {
        secret,
      },
    );
    expect(answer.status).toBe(202);
    expect(await userMessages(t, task.id)).toHaveLength(2); // queued behind the running turn
    held.open();
    await eventually(async () => (await userMessages(t, task.id)).length === 3, 60_000);
    await turnEnded(t, task.id);
    const diff = (await t.api<{ files: { path: string }[] }>("GET", `/api/tasks/${task.id}/diff`)).body;
    expect(diff.files.map((f) => f.path).sort()).toEqual(["after.txt", "held.txt", "one.txt"]);
  }, 150_000);

  it("refuses deliveries without a valid signature with 401 and changes nothing", async () => {
    const { task, repo, number } = await taskWithPullRequest("unsigned");
    const payload = githubPullComment(repo, number, "@umbra echo evil > evil.txt");
    const body = JSON.stringify(payload);
    const attempts = [
      await postGithub(server, "issue_comment", payload, { secret: null, deliveryId: "unsigned-1" }),
      await postGithub(server, "issue_comment", payload, { secret: "not-the-secret", deliveryId: "unsigned-2" }),
      // A valid signature of another body.
      await postWithSignature(server, body, await sign(secret, `${body} `), "unsigned-3"),
      await postWithSignature(server, body, `sha256=${"0".repeat(64)}`, "unsigned-4"),
      await postWithSignature(server, body, "garbage", "unsigned-5"),
    ];
    for (const attempt of attempts) {
      expect(attempt.status).toBe(401);
      expect(attempt.body?.error?.code).toBe("UNAUTHORIZED");
    }
    const stored = await server.server.database.db.select().from(webhookDeliveries);
    expect(stored.map((row) => row.deliveryId).filter((id) => id.startsWith("unsigned-"))).toEqual([]);
    await server.server.delivery.drain();
    expect(await userMessages(t, task.id)).toEqual(["echo one > one.txt"]);
    expect((await readTask(t, task.id)).status).toBe("COMPLETED");
  }, 90_000);

  it("runs no second turn for a replayed delivery", async () => {
    const { task, repo, number } = await taskWithPullRequest("replay");
    const payload = githubPullComment(repo, number, "@umbra echo once >> once.txt");
    const first = await postGithub(server, "issue_comment", payload, { secret, deliveryId: "delivery-replayed" });
    expect(first.body?.status).toBe("accepted");
    await eventually(async () => (await userMessages(t, task.id)).length === 2, 60_000);
    const replay = await postGithub(server, "issue_comment", payload, { secret, deliveryId: "delivery-replayed" });
    expect(replay).toEqual({ status: 202, body: { status: "duplicate" } });
    await turnEnded(t, task.id);
    expect(await userMessages(t, task.id)).toHaveLength(2);
  }, 90_000);

  it("ignores comments without the mention and comments by people without write access", async () => {
    const { task, repo, number } = await taskWithPullRequest("ignored");
    const plain = await postGithub(server, "issue_comment", githubPullComment(repo, number, "looks good to me"), {
      secret,
    });
    expect(plain.body?.status).toBe("ignored");
    const stranger = await postGithub(
      server,
      "issue_comment",
      githubPullComment(repo, number, "@umbra echo pwned > pwned.txt", { login: "mallory", association: "NONE" }),
      { secret },
    );
    expect(stranger.status).toBe(202);
    await server.server.delivery.drain(); // the webhook's work is done
    expect(await userMessages(t, task.id)).toEqual(["echo one > one.txt"]);
  }, 90_000);

  it("archives the task and cleans up its workspace when its pull request is merged", async () => {
    const { task, repo, number, url } = await taskWithPullRequest("merged");
    const workspace = (await readTask(t, task.id)).workspacePath!;
    expect(existsSync(workspace)).toBe(true);
    const pushesBefore = github.git.requests.filter((r) => r.path.endsWith("git-receive-pack")).length;
    const answer = await postGithub(
      server,
      "pull_request",
      githubPullClosed(repo, number, `umbra/${task.id}`, true, url),
      { secret },
    );
    expect(answer.status).toBe(202);
    await eventually(async () => (await readTask(t, task.id)).status === "ARCHIVED", 60_000);
    const archived = await getTask(t, task.id);
    expect([archived.status, archived.initStatus]).toEqual(["ARCHIVED", "INACTIVE"]);
    expect(archived.delivery.pullRequest).toMatchObject({ number, state: "merged" });
    expect(existsSync(workspace)).toBe(false);
    await server.server.delivery.drain();
    expect(github.git.requests.filter((r) => r.path.endsWith("git-receive-pack")).length).toBe(pushesBefore);
  }, 90_000);

  it("creates a task for an issue comment that mentions @umbra; its pull request closes the issue", async () => {
    github.git.addRepo("acme/issues", createRepo());
    const repo: GithubRepo = { fullName: "acme/issues", cloneUrl: github.repoUrl("acme/issues") };
    const before = (await t.api<{ tasks: { id: string }[] }>("GET", "/api/tasks")).body.tasks.length;
    const answer = await postGithub(
      server,
      "issue_comment",
      githubIssueComment(repo, { number: 7, title: "echo fixed > fixed.txt", body: "# the file is missing" }, "@umbra"),
      { secret },
    );
    expect(answer.body?.status).toBe("accepted");
    const task = await eventually(async () => {
      const { tasks } = (await t.api<{ tasks: (TaskDtoLike & { id: string })[] }>("GET", "/api/tasks")).body;
      return tasks.length > before ? tasks[0] : undefined;
    }, 60_000);
    expect([task.repoUrl, task.title, task.delivery.mode]).toEqual([
      repo.cloneUrl,
      "echo fixed > fixed.txt",
      "pull-request",
    ]);
    await deliveryOf(t, task.id, (d) => d.pullRequest !== null, 60_000);
    const pull = github.pulls.find((p) => p.repo === "issues");
    expect(pull?.body).toContain("Closes #7");
    expect(pull?.title).toBe("echo fixed > fixed.txt");
  }, 120_000);

  it("creates a task for an issue labelled umbra, and none for another label", async () => {
    github.git.addRepo("acme/labels", createRepo());
    const repo: GithubRepo = { fullName: "acme/labels", cloneUrl: github.repoUrl("acme/labels") };
    const issue = { number: 3, title: "echo labelled > labelled.txt", body: "" };
    const other = await postGithub(server, "issues", githubIssueLabeled(repo, issue, "bug"), { secret });
    expect(other.body?.status).toBe("ignored");
    const labelled = await postGithub(server, "issues", githubIssueLabeled(repo, issue, "umbra"), { secret });
    expect(labelled.body?.status).toBe("accepted");
    const task = await eventually(async () => {
      const { tasks } = (await t.api<{ tasks: TaskDtoLike[] }>("GET", "/api/tasks")).body;
      return tasks.find((candidate) => candidate.repoUrl === repo.cloneUrl);
    }, 60_000);
    expect(task.title).toBe("echo labelled > labelled.txt");
    await turnEnded(t, task.id);
  }, 90_000);

  it("acknowledges events it does not act on with 202", async () => {
    for (const [event, payload] of [
      ["ping", { zen: "Keep it logically awesome.", hook_id: 1 }],
      ["star", { action: "created" }],
      ["issue_comment", { action: "deleted" }],
      ["pull_request", { action: "opened" }],
    ] as const) {
      const answer = await postGithub(server, event, payload, { secret });
      expect(answer).toEqual({ status: 202, body: { status: "ignored" } });
    }
  });

  it("never answers 500 to fuzzed bodies, signed or not", async () => {
    const events = fc.constantFrom(
      "issue_comment",
      "pull_request",
      "pull_request_review_comment",
      "issues",
      "push",
      "",
    );
    const bodies = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value) ?? "null"),
      fc.string({ maxLength: 200 }),
      fc
        .record({
          action: fc.constantFrom("created", "closed", "labeled"),
          issue: fc.jsonValue({ maxDepth: 2 }),
          comment: fc.jsonValue({ maxDepth: 2 }),
          pull_request: fc.jsonValue({ maxDepth: 2 }),
          repository: fc.jsonValue({ maxDepth: 2 }),
        })
        .map((value) => JSON.stringify(value)),
    );
    await fc.assert(
      fc.asyncProperty(events, bodies, fc.boolean(), async (event, body, wantSigned) => {
        const signed = wantSigned && body.length > 0; // an empty body has no signature
        const answer = await postGithub(server, event, null, { secret: signed ? secret : null, body });
        expect(signed ? [202, 400] : [401]).toContain(answer.status);
      }),
      { numRuns: 60 },
    );
    expect((await t.api("GET", "/api/health")).status).toBe(200);
  }, 90_000);
});

type TaskDtoLike = { id: string; repoUrl: string; title: string; delivery: { mode: string } };

describe("GitLab webhooks", () => {
  const secret = gitlabSecret;
  const developer = { id: 31, username: "devon" };
  const guest = { id: 32, username: "gus" };

  beforeAll(() => {
    gitlab.members.set(developer.id, 30);
    gitlab.members.set(guest.id, 10);
  });

  async function taskWithMergeRequest(path: string) {
    gitlab.git.addRepo(path, createRepo());
    const project: GitlabProject = { path, httpUrl: gitlab.repoUrl(path) };
    const task = await createTask(t, { repoUrl: project.httpUrl, message: "echo one > one.txt" });
    const delivery = await deliveryOf(t, task.id, (d) => d.pullRequest !== null, 60_000);
    await turnEnded(t, task.id);
    return { task, project, iid: delivery.pullRequest!.number, url: delivery.pullRequest!.url };
  }

  it("runs a follow-up for a note by a developer that mentions @umbra, refuses a wrong token, ignores a guest", async () => {
    const { task, project, iid } = await taskWithMergeRequest("team/notes");
    const wrong = await postGitlab(
      server,
      "Note Hook",
      gitlabMergeRequestNote(project, iid, "@umbra echo x > x.txt", developer),
      {
        token: "not-the-token",
      },
    );
    expect(wrong.status).toBe(401);
    const missing = await postGitlab(
      server,
      "Note Hook",
      gitlabMergeRequestNote(project, iid, "@umbra echo x > x.txt", developer),
      {
        token: null,
      },
    );
    expect(missing.status).toBe(401);
    const fromGuest = await postGitlab(
      server,
      "Note Hook",
      gitlabMergeRequestNote(project, iid, "@umbra echo guest > guest.txt", guest),
      {
        token: secret,
      },
    );
    expect(fromGuest.status).toBe(202);
    const answer = await postGitlab(
      server,
      "Note Hook",
      gitlabMergeRequestNote(project, iid, "@umbra echo two >> one.txt", developer),
      {
        token: secret,
      },
    );
    expect(answer.body?.status).toBe("accepted");
    await eventually(async () => (await userMessages(t, task.id)).length === 2, 60_000);
    expect((await userMessages(t, task.id))[1]).toMatch(/^echo two >> one.txt\n\n# From a review comment by @devon/);
    await turnEnded(t, task.id);
    await eventually(async () => gitlab.requests.some((r) => r.method === "PUT"), 60_000);
    expect(await userMessages(t, task.id)).toHaveLength(2); // the guest's note ran nothing
  }, 150_000);

  it("archives the task when its merge request is merged", async () => {
    const { task, project, iid, url } = await taskWithMergeRequest("team/merge");
    const answer = await postGitlab(
      server,
      "Merge Request Hook",
      gitlabMergeRequestEvent(project, iid, "merged", `umbra/${task.id}`, url),
      { token: secret },
    );
    expect(answer.status).toBe(202);
    await eventually(async () => (await readTask(t, task.id)).status === "ARCHIVED", 60_000);
    expect((await getTask(t, task.id)).delivery.pullRequest?.state).toBe("merged");
  }, 90_000);

  it("creates a task for an issue labelled umbra; its merge request closes the issue", async () => {
    gitlab.git.addRepo("team/issues", createRepo());
    const project: GitlabProject = { path: "team/issues", httpUrl: gitlab.repoUrl("team/issues") };
    const answer = await postGitlab(
      server,
      "Issue Hook",
      gitlabIssueLabeled(project, { iid: 12, title: "echo fixed > fixed.txt", description: "" }, "umbra", developer),
      { token: secret },
    );
    expect(answer.body?.status).toBe("accepted");
    const task = await eventually(async () => {
      const { tasks } = (await t.api<{ tasks: TaskDtoLike[] }>("GET", "/api/tasks")).body;
      return tasks.find((candidate) => candidate.repoUrl === project.httpUrl);
    }, 60_000);
    await deliveryOf(t, task.id, (d) => d.pullRequest !== null, 60_000);
    expect(gitlab.mergeRequests.find((mr) => mr.project === "team/issues")?.description).toContain("Closes #12");
  }, 120_000);
});
