import { execFileSync } from "node:child_process";
import type { TaskDto } from "@repo/types";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTask, deliveryOf, followUp, refIn, turnEnded } from "../../../test/support/delivery";
import { type FakeGithub, startFakeGithub } from "../../../test/support/fake-github";
import { type FakeGitlab, startFakeGitlab } from "../../../test/support/fake-gitlab";
import { createRepo, git, tempDir } from "../../../test/support/git";
import { eventually } from "../../../test/support/lifecycle";
import { type OpenAiStub, startOpenAiStub } from "../../../test/support/openai-stub";
import { SERVER_START_MS, startTestServer, type TestServer } from "../../../test/support/server";
import { ManualClock } from "../src/utils/clock";

type TaskBody = { task: TaskDto };

describe("pull requests on a GitHub Enterprise Server", () => {
  const token = "ghes-token-0123456789";
  const clock = new ManualClock(Date.UTC(2026, 3, 1, 8));
  let github: FakeGithub;
  let t: TestServer;

  beforeAll(async () => {
    github = await startFakeGithub(token);
    t = await startTestServer({
      clock,
      env: { GITHUB_URL: github.url, GITHUB_TOKEN: token, DELIVERY: "pull-request" },
    });
  }, SERVER_START_MS);
  afterAll(async () => {
    await t?.close();
    await github?.close();
  });

  const apiCalls = (method: string, path: string) =>
    github.requests.filter((r) => r.method === method && r.path === path);

  it("opens one draft pull request after the first turn that changed something and refreshes it on follow-ups", async () => {
    const remote = github.git.addRepo("acme/web", createRepo());
    const task = await createTask(t, { repoUrl: github.repoUrl("acme/web"), message: "true", title: "Add a greeting" });
    await turnEnded(t, task.id);
    await t.server.delivery.drain();
    expect(github.requests).toEqual([]); // nothing changed, nothing to propose

    await followUp(t, task.id, "echo hello > hello.txt");
    const opened = await deliveryOf(t, task.id, (d) => d.pullRequest !== null, 60_000);
    const branch = `umbra/${task.id}`;
    expect(opened).toEqual({
      mode: "pull-request",
      state: "pushed",
      remoteBranch: branch,
      pushedSha: refIn(remote, `refs/heads/${branch}`),
      error: null,
      nextRetryAt: null,
      pullRequest: { url: `${github.url}/acme/web/pull/1`, number: 1, state: "open", draft: true },
    });
    const [create] = apiCalls("POST", "/api/v3/repos/acme/web/pulls");
    expect(create?.body).toMatchObject({ head: branch, base: "main", title: "Add a greeting", draft: true });
    expect(create?.authorization).toBe(`token ${token}`);
    expect(String(create?.body?.body)).toContain("### Turns\n\n1. true\n2. echo hello > hello.txt");
    expect(String(create?.body?.body)).toContain("- `hello.txt` (+1 −0)");

    await turnEnded(t, task.id);
    await followUp(t, task.id, "echo again >> hello.txt");
    await eventually(async () => apiCalls("PATCH", "/api/v3/repos/acme/web/pulls/1").length === 1, 60_000);
    expect(String(github.pulls[0]?.body)).toContain("3. echo again >> hello.txt");
    await turnEnded(t, task.id);
    await followUp(t, task.id, "echo third > third.txt");
    await eventually(async () => apiCalls("PATCH", "/api/v3/repos/acme/web/pulls/1").length === 2, 60_000);

    expect(apiCalls("POST", "/api/v3/repos/acme/web/pulls")).toHaveLength(1);
    expect(github.pulls.map((p) => [p.number, p.head, p.draft])).toEqual([[1, branch, true]]);
  }, 120_000);

  it("opens a pull request on demand for a task that only pushes its branch, once", async () => {
    github.git.addRepo("acme/api", createRepo());
    const task = await createTask(t, {
      repoUrl: github.repoUrl("acme/api"),
      message: "echo fix > fix.txt",
      delivery: "branch",
    });
    await deliveryOf(t, task.id, (d) => d.state === "pushed", 60_000);
    expect(apiCalls("POST", "/api/v3/repos/acme/api/pulls")).toEqual([]);

    const opened = await t.api<TaskBody>("POST", `/api/tasks/${task.id}/pull-request`);
    expect(opened.status).toBe(200);
    expect(opened.body.task.delivery).toMatchObject({
      mode: "pull-request",
      pullRequest: { number: 1, state: "open", draft: true },
    });
    const again = await t.api<TaskBody>("POST", `/api/tasks/${task.id}/pull-request`);
    expect(again.status).toBe(200);
    expect(again.body.task.delivery.pullRequest?.number).toBe(1);
    expect(apiCalls("POST", "/api/v3/repos/acme/api/pulls")).toHaveLength(1);
  });

  it("shows a failed pull request call and retries it", async () => {
    github.git.addRepo("acme/flaky", createRepo());
    github.failNext(502);
    const task = await createTask(t, { repoUrl: github.repoUrl("acme/flaky"), message: "echo x > x.txt" });
    const failed = await deliveryOf(t, task.id, (d) => d.error !== null, 60_000);
    expect(failed).toMatchObject({ state: "pushed", pullRequest: null });
    expect(failed.error).toMatch(/^opening the pull request failed: GitHub answered 502/);
    clock.advance(30_000);
    const opened = await deliveryOf(t, task.id, (d) => d.pullRequest !== null);
    expect(opened.error).toBeNull();
    expect(github.pulls.filter((p) => p.repo === "flaky")).toHaveLength(1);
  });

  it("answers 400 for a pull request on a repository that is on no configured forge", async () => {
    const task = await createTask(t, { repoUrl: createRepo(), message: "echo x > x.txt" });
    await turnEnded(t, task.id);
    const answer = await t.api<{ error: { code: string; message: string } }>(
      "POST",
      `/api/tasks/${task.id}/pull-request`,
    );
    expect(answer.status).toBe(400);
    expect(answer.body.error.message).toMatch(/not on a configured forge/);
  });

  it("serves the branch since its base as an mbox that git am applies", async () => {
    const base = createRepo({ "README.md": "# Patch\n" });
    const task = await createTask(t, { repoUrl: base, message: "echo one > one.txt" });
    await turnEnded(t, task.id);
    await followUp(t, task.id, "echo two > two.txt && rm README.md");
    await turnEnded(t, task.id);
    await t.server.delivery.drain(); // the second turn's push into the local repository

    const response = await fetch(`${t.url}/api/tasks/${task.id}/patch`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^application\/mbox/);
    expect(response.headers.get("content-disposition")).toBe(`attachment; filename="umbra-${task.id}.patch"`);
    const mbox = await response.text();
    expect(mbox.match(/^From [0-9a-f]{40} /gm)).toHaveLength(2);

    const clone = tempDir("umbra-am-");
    git(clone, "clone", "--quiet", base, ".");
    execFileSync("git", ["-c", "user.name=Reviewer", "-c", "user.email=r@example.test", "am", "--quiet"], {
      cwd: clone,
      input: mbox,
    });
    // Applied on the base, the patches give exactly the task branch's tree (pushed into the local repository).
    expect(git(clone, "rev-parse", "HEAD^{tree}")).toBe(git(base, "rev-parse", `umbra/${task.id}^{tree}`));
  }, 90_000);
});

describe("merge requests on a self-managed GitLab", () => {
  const token = "glpat-self-managed-0123";
  let gitlab: FakeGitlab;
  let model: OpenAiStub;
  let t: TestServer;

  beforeAll(async () => {
    gitlab = await startFakeGitlab(token);
    model = await startOpenAiStub([
      { text: "Adds a greeting file so that visitors are welcomed." },
      { text: "Adds a greeting file and a second line to it." },
    ]);
    t = await startTestServer({
      env: {
        GITLAB_URL: gitlab.url,
        GITLAB_TOKEN: token,
        DELIVERY: "pull-request",
        LLM_PROVIDER: "openai-compatible",
        LLM_MODEL: "summary-model",
        LLM_BASE_URL: model.baseUrl,
      },
    });
  }, SERVER_START_MS);
  afterAll(async () => {
    await t?.close();
    await gitlab?.close();
    await model?.close();
  });

  it("opens a draft merge request into the base branch with the model's summary and refreshes it on a follow-up", async () => {
    gitlab.git.addRepo("group/sub/web", createRepo());
    const task = await createTask(t, {
      repoUrl: gitlab.repoUrl("group/sub/web"),
      message: "echo hello > hello.txt",
      title: "Welcome visitors",
    });
    const opened = await deliveryOf(t, task.id, (d) => d.pullRequest !== null, 60_000);
    expect(opened.pullRequest).toEqual({
      url: `${gitlab.url}/group/sub/web/-/merge_requests/1`,
      number: 1,
      state: "open",
      draft: true,
    });
    const create = gitlab.requests.find((r) => r.method === "POST");
    expect(create?.path).toBe("/api/v4/projects/group%2Fsub%2Fweb/merge_requests");
    expect(create?.body).toMatchObject({
      source_branch: `umbra/${task.id}`,
      target_branch: "main",
      title: "Draft: Welcome visitors",
    });
    expect(String(create?.body?.description)).toMatch(/^Adds a greeting file so that visitors are welcomed\.\n\n/);

    await turnEnded(t, task.id);
    await followUp(t, task.id, "echo more >> hello.txt");
    await eventually(async () => gitlab.requests.some((r) => r.method === "PUT"), 60_000);
    expect(gitlab.mergeRequests[0]?.description).toMatch(/^Adds a greeting file and a second line to it\./);
    expect(gitlab.mergeRequests).toHaveLength(1);
    expect(gitlab.requests.every((r) => r.authorization === token)).toBe(true);
  }, 90_000);
});
