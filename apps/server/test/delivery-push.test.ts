import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DeliveryDto } from "@repo/types";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import {
  bareCopy,
  createTask,
  deliveryOf,
  deliveryRow,
  followUp,
  getTask,
  heldCommand,
  refIn,
  turnEnded,
} from "../../../test/support/delivery";
import { createRepo, git, tempDir } from "../../../test/support/git";
import { type SmartGitServer, startSmartGitServer } from "../../../test/support/git-smart-http";
import { eventually } from "../../../test/support/lifecycle";
import { type CapturedLogs, captureLogs } from "../../../test/support/log-capture";
import { EventRecorder, SERVER_START_MS, startTestServer, type TestServer } from "../../../test/support/server";
import { ManualClock } from "../src/utils/clock";

const targets = await databaseTargets();
const pushed = (delivery: DeliveryDto) => delivery.state === "pushed";

describe.each(targets)("pushing task branches on $name", (target) => {
  let database: TestDatabase;
  let t: TestServer;
  let logs: CapturedLogs;

  beforeAll(async () => {
    database = await target.open();
    logs = captureLogs();
    t = await startTestServer({ database, logger: logs.logger });
  }, SERVER_START_MS);
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  it("pushes the task branch to a bare repository over file:// after a turn, and announces it", async () => {
    const remote = bareCopy(createRepo());
    const recorder = new EventRecorder(t.url);
    try {
      const task = await createTask(t, { repoUrl: `file://${remote}`, message: "echo hello > hello.txt" });
      await recorder.join(task.id);
      const delivery = await deliveryOf(t, task.id, pushed);
      const branch = `umbra/${task.id}`;
      expect(delivery).toEqual({
        mode: "branch",
        state: "pushed",
        remoteBranch: branch,
        pushedSha: refIn(remote, `refs/heads/${branch}`),
        error: null,
        nextRetryAt: null,
        pullRequest: null,
      });
      expect(git(remote, "show", `${branch}:hello.txt`)).toBe("hello");
      const event = await recorder.waitFor(
        (e) =>
          e.name === "task-delivery-update" && e.payload.taskId === task.id && e.payload.delivery.state === "pushed",
      );
      expect(event.name === "task-delivery-update" && event.payload.delivery.pushedSha).toBe(delivery.pushedSha);
    } finally {
      recorder.close();
    }
  });

  it("pushes only turns that changed the branch", async () => {
    const remote = bareCopy(createRepo());
    const task = await createTask(t, { repoUrl: `file://${remote}`, message: "echo one > one.txt" });
    const first = await deliveryOf(t, task.id, pushed);
    const pushesOf = () => logs.events("delivery.push.ok").filter((e) => e.taskId === task.id).length;
    expect(pushesOf()).toBe(1);

    await turnEnded(t, task.id);
    await followUp(t, task.id, "true");
    await turnEnded(t, task.id);
    await followUp(t, task.id, "echo two > two.txt");
    const second = await deliveryOf(t, task.id, (d) => d.pushedSha !== first.pushedSha && d.state === "pushed");
    // The turn that changed nothing pushed nothing: two pushes for three turns.
    expect(pushesOf()).toBe(2);
    expect(git(remote, "rev-list", "--count", `${first.pushedSha}..${second.pushedSha}`)).toBe("1");
  });

  it("pushes to a local-path repository itself, leaving its checkout alone", async () => {
    const repo = createRepo({ "README.md": "# Local\n" });
    const task = await createTask(t, { repoUrl: repo, message: "echo local > local.txt" });
    const delivery = await deliveryOf(t, task.id, pushed);
    expect(git(repo, "branch", "-a", "--format=%(refname:short)").split("\n")).toContain(`umbra/${task.id}`);
    expect(git(repo, "rev-parse", `umbra/${task.id}`)).toBe(delivery.pushedSha);
    expect(git(repo, "status", "--porcelain")).toBe("");
    expect(git(repo, "rev-parse", "--abbrev-ref", "HEAD")).toBe("main");
  });

  it("pushes nothing when the task's delivery is none", async () => {
    const repo = createRepo();
    const task = await createTask(t, { repoUrl: repo, message: "echo kept > kept.txt", delivery: "none" });
    await turnEnded(t, task.id);
    await t.server.delivery.drain();
    expect(git(repo, "branch", "--list", "umbra/*")).toBe("");
    expect((await getTask(t, task.id)).delivery).toEqual({
      mode: "none",
      state: "pending",
      remoteBranch: null,
      pushedSha: null,
      error: null,
      nextRetryAt: null,
      pullRequest: null,
    });
  });

  it("refuses an unknown delivery mode with 400", async () => {
    const answer = await t.api<{ error: { code: string; message: string } }>("POST", "/api/tasks", {
      repoUrl: createRepo(),
      message: "true",
      delivery: "email",
    });
    expect(answer.status).toBe(400);
    expect(answer.body.error.code).toBe("VALIDATION_ERROR");
    expect(answer.body.error.message).toMatch(/^delivery: /);
  });
});

describe("pushing over git smart HTTP with basic auth", () => {
  const clock = new ManualClock(Date.UTC(2026, 2, 2, 9));
  const password = "s3cret-basic-password";
  let git_: SmartGitServer;
  /** A second git server, closed by the test that needs an unreachable remote. */
  let gone: SmartGitServer;
  let t: TestServer;
  let logs: CapturedLogs;

  beforeAll(async () => {
    logs = captureLogs();
    git_ = await startSmartGitServer({ username: "umbra-bot", password });
    gone = await startSmartGitServer({ username: "umbra-bot", password });
    const credentials = join(tempDir("umbra-credentials-"), "git-credentials");
    const line = (origin: string) => `${origin.replace("://", `://umbra-bot:${password}@`)}\n`;
    writeFileSync(credentials, line(git_.origin) + line(gone.origin), { mode: 0o600 });
    // The git server listens on loopback, which repository URLs may name only when allowed.
    t = await startTestServer({
      clock,
      logger: logs.logger,
      env: { GIT_CREDENTIALS_FILE: credentials, ALLOWED_REPO_HOSTS: "127.0.0.1" },
    });
  }, SERVER_START_MS);
  afterEach(() => git_.setCredentials("umbra-bot", password));
  afterAll(async () => {
    await t?.close();
    await git_?.close();
    await gone?.close();
  });

  it("answers the server's challenge with the configured credentials and pushes", async () => {
    const remoteDir = git_.addRepo("acme/smart", createRepo());
    const task = await createTask(t, { repoUrl: git_.urlOf("acme/smart"), message: "echo smart > smart.txt" });
    const delivery = await deliveryOf(t, task.id, pushed);
    expect(refIn(remoteDir, `refs/heads/umbra/${task.id}`)).toBe(delivery.pushedSha);
    const pushes = git_.requests.filter((r) => r.path.endsWith("/git-receive-pack"));
    expect(pushes.map((r) => [r.status, r.user])).toContainEqual([200, "umbra-bot"]);
    // Nothing was sent before the server asked for it: every request without credentials was challenged.
    expect(git_.requests.filter((r) => r.user === null).every((r) => r.status === 401)).toBe(true);
  });

  it("shows a push refused for wrong credentials, keeps the work, and retries with backoff until it goes through", async () => {
    const remoteDir = git_.addRepo("acme/rotated", createRepo());
    const held = heldCommand("echo rotated > rotated.txt");
    const task = await createTask(t, { repoUrl: git_.urlOf("acme/rotated"), message: held.command });
    await eventually(async () => (await getTask(t, task.id)).status === "RUNNING");
    git_.setCredentials("umbra-bot", "the-token-was-rotated"); // the configured password no longer works
    held.open();

    const failed = await deliveryOf(t, task.id, (d) => d.state === "failed");
    expect(failed.error).toMatch(/^pushing umbra\/\S+ failed: Authentication failed/);
    expect(failed.error).not.toContain(password);
    expect(failed.nextRetryAt).toBe(new Date(clock.now().getTime() + 30_000).toISOString());
    expect((await getTask(t, task.id)).status).toBe("COMPLETED");
    const diff = (await t.api<{ files: { path: string }[] }>("GET", `/api/tasks/${task.id}/diff`)).body;
    expect(diff.files.map((f) => f.path)).toEqual(["rotated.txt"]);
    expect(refIn(remoteDir, `refs/heads/umbra/${task.id}`)).toBeNull();
    let row = await deliveryRow(t, task.id);
    expect(row.attempts).toBe(1);
    expect(row.nextAttemptAt!.getTime() - clock.now().getTime()).toBe(30_000);

    // Not a moment early.
    const requestsBefore = git_.requests.length;
    clock.advance(29_999);
    expect(git_.requests.length).toBe(requestsBefore);
    // The first retry is refused again; the next one waits twice as long.
    clock.advance(1);
    row = await eventually(async () => {
      const current = await deliveryRow(t, task.id);
      return current.attempts === 2 ? current : undefined;
    });
    expect(row.state).toBe("failed");
    expect(row.nextAttemptAt!.getTime() - clock.now().getTime()).toBe(60_000);

    git_.setCredentials("umbra-bot", password); // the credentials work again
    clock.advance(60_000);
    const delivered = await deliveryOf(t, task.id, pushed);
    expect(delivered.error).toBeNull();
    expect(refIn(remoteDir, `refs/heads/umbra/${task.id}`)).toBe(delivered.pushedSha);
    expect((await deliveryRow(t, task.id)).nextAttemptAt).toBeNull();
  });

  it("shows an unreachable remote with git's reason and schedules a retry", async () => {
    gone.addRepo("acme/gone", createRepo());
    const held = heldCommand("echo gone > gone.txt");
    const task = await createTask(t, { repoUrl: gone.urlOf("acme/gone"), message: held.command });
    await eventually(async () => (await getTask(t, task.id)).status === "RUNNING");
    await gone.close(); // the remote goes away while the agent works
    held.open();
    const failed = await deliveryOf(t, task.id, (d) => d.state === "failed");
    expect(failed.error).toMatch(/Failed to connect|Connection refused|Could not connect/i);
    expect((await deliveryRow(t, task.id)).nextAttemptAt).not.toBeNull();
    expect((await getTask(t, task.id)).status).toBe("COMPLETED");
  });

  it("lets a push finish quietly when its task is deleted meanwhile", async () => {
    const remoteDir = git_.addRepo("acme/deleted", createRepo());
    const held = heldCommand("echo deleted > deleted.txt");
    const task = await createTask(t, { repoUrl: git_.urlOf("acme/deleted"), message: held.command });
    await eventually(async () => (await getTask(t, task.id)).status === "RUNNING");
    const gate = git_.hold();
    held.open();
    await gate.held; // the push has reached the remote
    expect((await t.api("DELETE", `/api/tasks/${task.id}`)).status).toBe(204);
    gate.release();
    await eventually(async () => logs.events("delivery.task-deleted").some((e) => e.taskId === task.id));
    expect(logs.events("delivery.failed").filter((e) => e.taskId === task.id)).toEqual([]);
    // What had been pushed is on the remote: deleting the task does not undo a delivery.
    expect(refIn(remoteDir, `refs/heads/umbra/${task.id}`)).toMatch(/^[0-9a-f]{40}$/);
  });
});
