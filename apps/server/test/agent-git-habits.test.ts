/**
 * An agent that uses git as people do — new branches, amends, detached HEAD,
 * rebases — through the real server and its API: every turn's work lands on
 * the task branch, every earlier saved commit stays in its history, and the
 * archive saves and answers 200. Local and remote mode, on every database.
 */
import { join } from "node:path";
import type { DiffResponse, TaskDto } from "@repo/types";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { createRepo, git } from "../../../test/support/git";
import { EventRecorder, startTestServer, type TestServer } from "../../../test/support/server";
import { RepositoryStore } from "../src/repository/repository-store";

const targets = await databaseTargets();
const cases = targets.flatMap((target) => (["local", "remote"] as const).map((mode) => ({ target, mode })));

type TaskBody = { task: TaskDto };

describe.each(cases)("an agent's git habits in $mode mode on $target.name", ({ target, mode }) => {
  let database: TestDatabase;
  let t: TestServer;

  beforeAll(async () => {
    database = await target.open();
    t = await startTestServer({ database, env: { AGENT_MODE: mode, VM_READY_TIMEOUT_MS: "60000" } });
  });
  afterAll(async () => {
    await t.close();
    await database.close();
  });

  it("puts each turn's work on the task branch, keeps every saved commit, and archives with 200", async () => {
    const repo = createRepo({ "README.md": "# Habits\n" });
    const created = await t.api<TaskBody>("POST", "/api/tasks", {
      repoUrl: repo,
      message: "git checkout -q -b feature && echo one > one.txt && git add -A && git commit -q -m one",
    });
    expect(created.status).toBe(201);
    const taskId = created.body.task.id;
    const recorder = new EventRecorder(t.url);
    try {
      const joined = await recorder.join(taskId);
      // A turn that ended before the join is not announced again.
      let ended = ["COMPLETED", "FAILED"].includes(joined.task?.status ?? "");
      const mirror = new RepositoryStore(join(t.dataDir, "repos")).mirrorPath(repo);
      const branch = `umbra/${taskId}`;
      const saved: string[] = [];

      async function turnEnded(): Promise<TaskDto> {
        if (!ended) {
          await recorder.waitFor(
            (e) => e.name === "task-status-update" && ["COMPLETED", "FAILED"].includes(e.payload.status),
            120_000,
          );
        }
        ended = false;
        const task = (await t.api<TaskBody>("GET", `/api/tasks/${taskId}`)).body.task;
        expect([task.status, task.errorMessage]).toEqual(["COMPLETED", null]);
        saved.push(git(mirror, "rev-parse", branch));
        return task;
      }
      async function followUp(message: string): Promise<TaskDto> {
        recorder.clear();
        expect((await t.api("POST", `/api/tasks/${taskId}/messages`, { message })).status).toBe(202);
        return turnEnded();
      }
      const show = (path: string) => git(mirror, "show", `${branch}:${path}`);

      const first = await turnEnded();
      expect(show("one.txt")).toBe("one");

      await followUp("echo amended > one.txt && git add -A && git commit -q --amend -m one-amended");
      expect(show("one.txt")).toBe("amended");

      await followUp(
        "git checkout -q --detach && echo two > two.txt && git add -A && git commit -q -m two && echo three > three.txt",
      );
      expect([show("two.txt"), show("three.txt")]).toEqual(["two", "three"]);

      await followUp(
        `git checkout -q -b side ${first.baseCommitSha} && echo side > side.txt && git add -A && git commit -q -m side && ` +
          `git checkout -q ${branch} && git rebase -q side`,
      );
      expect([show("side.txt"), show("one.txt"), show("two.txt")]).toEqual(["side", "amended", "two"]);

      const diff = (await t.api<DiffResponse>("GET", `/api/tasks/${taskId}/diff`)).body;
      expect(diff.files.map((f) => f.path).sort()).toEqual(["one.txt", "side.txt", "three.txt", "two.txt"]);

      const archived = await t.api<TaskBody>("POST", `/api/tasks/${taskId}/archive`);
      expect(archived.status).toBe(200);
      expect([archived.body.task.status, archived.body.task.initStatus]).toEqual(["ARCHIVED", "INACTIVE"]);
      const head = git(mirror, "rev-parse", branch);
      for (const commit of saved) expect(git(mirror, "merge-base", "--is-ancestor", commit, head)).toBe("");
    } finally {
      recorder.close();
    }
  }, 600_000);
});
