import { existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MessageDto } from "@repo/types";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTask, deliveryOf, getTask, heldInWorkspace, turnEnded } from "../../../test/support/delivery";
import { type FakeGithub, startFakeGithub } from "../../../test/support/fake-github";
import { createRepo, git } from "../../../test/support/git";
import { eventually, readTask, vmSessionsOf } from "../../../test/support/lifecycle";
import { type CapturedLogs, captureLogs } from "../../../test/support/log-capture";
import { readSandboxRecord, sandboxDir, sidecarPid } from "../../../test/support/sandbox-probe";
import { EventRecorder, SERVER_START_MS, startTestServer, type TestServer } from "../../../test/support/server";
import { githubPullClosed, githubPullComment, postGithub } from "../../../test/support/webhooks";
import { ManualClock } from "../src/utils/clock";

const TOKEN = "ghes-token-that-must-never-leak-4c1d";
const SECRET = "webhook-secret-that-must-never-leak-9e2f";

async function userMessages(t: TestServer, id: string): Promise<string[]> {
  const { messages } = (await t.api<{ messages: MessageDto[] }>("GET", `/api/tasks/${id}/messages`)).body;
  return messages.filter((m) => m.role === "user").map((m) => m.content);
}

/** Command lines of every process now, as text. */
function allCommandLines(): string[] {
  const lines: string[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      lines.push(readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").join(" "));
    } catch {
      // the process ended meanwhile
    }
  }
  return lines;
}

/** Remote mode (sandboxes), a GitHub Enterprise on loopback, and a clock that only moves when told. */
describe("delivery in remote mode", () => {
  const clock = new ManualClock(Date.UTC(2026, 4, 4, 10));
  let github: FakeGithub;
  let logs: CapturedLogs;
  let t: TestServer;

  beforeAll(async () => {
    github = await startFakeGithub(TOKEN);
    logs = captureLogs();
    t = await startTestServer({
      clock,
      logger: logs.logger,
      env: {
        AGENT_MODE: "remote",
        VM_READY_TIMEOUT_MS: "20000",
        GITHUB_URL: github.url,
        GITHUB_TOKEN: TOKEN,
        GITHUB_WEBHOOK_SECRET: SECRET,
        DELIVERY: "pull-request",
      },
    });
  }, SERVER_START_MS);
  afterAll(async () => {
    await t?.close();
    await github?.close();
  });

  it("runs a review comment warm at once, re-initializes for one after cleanup, and archives on merge", async () => {
    github.git.addRepo("acme/remote", createRepo());
    const repo = { fullName: "acme/remote", cloneUrl: github.repoUrl("acme/remote") };
    const task = await createTask(t, { repoUrl: repo.cloneUrl, message: "echo one > one.txt" });
    const { pullRequest } = await deliveryOf(t, task.id, (d) => d.pullRequest !== null, 60_000);
    await turnEnded(t, task.id);
    const recorder = new EventRecorder(t.url);
    try {
      await recorder.join(task.id);
      const warmSession = (await vmSessionsOf(t, task.id)).find((s) => s.active)!;

      // Warm: the follow-up starts on the same sandbox, no provisioning.
      await postGithub(t, "issue_comment", githubPullComment(repo, pullRequest!.number, "@umbra echo two >> one.txt"), {
        secret: SECRET,
      });
      await eventually(async () => (await userMessages(t, task.id)).length === 2, 60_000);
      await turnEnded(t, task.id);
      await recorder.waitForStatus("COMPLETED", "ACTIVE");
      expect(recorder.statusTrail()).toEqual(["RUNNING/ACTIVE", "COMPLETED/ACTIVE"]);
      expect((await vmSessionsOf(t, task.id)).filter((s) => s.active).map((s) => s.id)).toEqual([warmSession.id]);
      await deliveryOf(t, task.id, (d) => d.state === "pushed" && d.pushedSha !== null, 60_000);
      await eventually(async () => github.requests.some((r) => r.method === "PATCH"), 60_000);

      // The warm window passes: the workspace is cleaned up.
      const { scheduledCleanupAt } = await readTask(t, task.id);
      expect(scheduledCleanupAt).not.toBeNull();
      recorder.clear();
      clock.set(scheduledCleanupAt!);
      await eventually(async () => (await readTask(t, task.id)).status === "ARCHIVED", 60_000);

      // After cleanup: the comment re-initializes the workspace with all earlier work, then runs.
      await postGithub(
        t,
        "issue_comment",
        githubPullComment(repo, pullRequest!.number, "@umbra echo three >> one.txt"),
        {
          secret: SECRET,
        },
      );
      await eventually(async () => (await userMessages(t, task.id)).length === 3, 60_000);
      await turnEnded(t, task.id);
      expect(recorder.statusTrail()).toContain("INITIALIZING/CREATE_VM");
      const delivered = await deliveryOf(
        t,
        task.id,
        (d) => d.state === "pushed" && github.requests.filter((r) => r.method === "PATCH").length === 2,
        60_000,
      );
      const remote = join(github.git.root, "acme/remote.git");
      expect(git(remote, "show", `${delivered.pushedSha}:one.txt`)).toBe("one\ntwo\nthree");

      // Merged: the task is archived and its sandbox removed.
      const answer = await postGithub(
        t,
        "pull_request",
        githubPullClosed(repo, pullRequest!.number, `umbra/${task.id}`, true, pullRequest!.url),
        { secret: SECRET },
      );
      expect(answer.status).toBe(202);
      await eventually(async () => (await readTask(t, task.id)).status === "ARCHIVED", 60_000);
      expect((await vmSessionsOf(t, task.id)).filter((s) => s.active)).toEqual([]);
      expect((await getTask(t, task.id)).delivery.pullRequest?.state).toBe("merged");
    } finally {
      recorder.close();
    }
  }, 240_000);

  it("never lets the forge token or webhook secret into a log line, message, task, command line or sandbox", async () => {
    github.git.addRepo("acme/secret", createRepo());
    const held = heldInWorkspace("env | sort > env.txt && env");
    const task = await createTask(t, { repoUrl: github.repoUrl("acme/secret"), message: held.command });
    await eventually(async () => (await readTask(t, task.id)).status === "RUNNING", 60_000);

    // The sandbox's own environment (the sidecar and the launcher around it), read from outside.
    const record = readSandboxRecord(t.dataDir, task.id);
    const pids = [sidecarPid(task.id), record?.launcherPid].filter((pid): pid is number => Boolean(pid));
    expect(pids.length).toBeGreaterThan(0);
    for (const pid of pids) expect(readFileSync(`/proc/${pid}/environ`, "utf8")).not.toContain(TOKEN);

    // Hold the push at the forge and look at every process while it runs.
    const gate = github.git.hold();
    held.open(join(sandboxDir(t.dataDir, task.id), "workspace"));
    await gate.held;
    const during = allCommandLines();
    const credentialDirs = readdirSync(tmpdir()).filter((name) => name.startsWith("umbra-git-credential-"));
    gate.release();
    expect(during.some((line) => line.includes("git") && line.includes(`${github.url}/acme/secret.git`))).toBe(true);
    expect(during.filter((line) => line.includes(TOKEN) || line.includes(SECRET))).toEqual([]);
    expect(credentialDirs.length).toBeGreaterThan(0);

    const delivery = await deliveryOf(t, task.id, (d) => d.pullRequest !== null, 60_000);
    await turnEnded(t, task.id);
    // The credential file lived exactly as long as the transfer.
    for (const dir of credentialDirs) expect(existsSync(join(tmpdir(), dir))).toBe(false);

    const remote = join(github.git.root, "acme/secret.git");
    const agentEnvironment = git(remote, "show", `${delivery.pushedSha}:env.txt`);
    expect(agentEnvironment.length).toBeGreaterThan(0);
    expect(agentEnvironment).not.toContain(TOKEN);

    const exposed = [
      ...logs.lines,
      JSON.stringify((await t.api("GET", `/api/tasks/${task.id}/messages`)).body),
      JSON.stringify((await t.api("GET", `/api/tasks/${task.id}`)).body),
      JSON.stringify((await t.api("GET", "/api/tasks")).body),
      JSON.stringify((await t.api("GET", "/api/config")).body),
    ];
    expect(logs.lines.length).toBeGreaterThan(20);
    expect(exposed.filter((text) => text.includes(TOKEN) || text.includes(SECRET))).toEqual([]);
    // The forge did get it, through git's credential mechanism and the API client.
    expect(github.git.requests.some((r) => r.user === "x-access-token")).toBe(true);
    expect(github.requests.every((r) => r.authorization === `token ${TOKEN}`)).toBe(true);
  }, 180_000);
});
