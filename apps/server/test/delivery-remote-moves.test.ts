import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bareCopy,
  createTask,
  deliveryOf,
  followUp,
  getTask,
  heldCommand,
  pushAsSomeoneElse,
  refIn,
  turnEnded,
} from "../../../test/support/delivery";
import { createRepo, git } from "../../../test/support/git";
import { eventually, readTask } from "../../../test/support/lifecycle";
import { SERVER_START_MS, startTestServer, type TestServer } from "../../../test/support/server";

/** Commits someone else pushed to a task's branch, taken in before the next turn (local mode, real git). */
describe("commits pushed to a task's branch by someone else", () => {
  let t: TestServer;

  beforeAll(async () => {
    t = await startTestServer();
  }, SERVER_START_MS);
  afterAll(async () => {
    await t?.close();
  });

  async function pushedTask(remote: string, message: string) {
    const task = await createTask(t, { repoUrl: `file://${remote}`, message });
    const delivery = await deliveryOf(t, task.id, (d) => d.state === "pushed", 60_000);
    await turnEnded(t, task.id);
    return { task, branch: `umbra/${task.id}`, first: delivery.pushedSha! };
  }

  /** A follow-up whose turn waits until the test has pushed to the remote branch, then ends. */
  async function followUpWhileSomeonePushes(
    taskId: string,
    command: string,
    push: () => string,
  ): Promise<{ theirs: string }> {
    const held = heldCommand(command);
    await followUp(t, taskId, held.command);
    const theirs = push();
    held.open();
    await turnEnded(t, taskId);
    return { theirs };
  }

  it("fast-forwards the workspace to a reviewer's commit before the next turn, then pushes on top of it", async () => {
    const remote = bareCopy(createRepo());
    const { task, branch, first } = await pushedTask(remote, "echo one > one.txt");
    const theirs = pushAsSomeoneElse(remote, branch, { "review.txt": "from review\n" }, "Reviewer's fix");

    await followUp(t, task.id, "cat review.txt > seen.txt");
    await turnEnded(t, task.id);
    const delivery = await deliveryOf(t, task.id, (d) => d.state === "pushed" && d.pushedSha !== theirs, 60_000);
    const head = refIn(remote, `refs/heads/${branch}`)!;
    expect(delivery.pushedSha).toBe(head);
    expect(git(remote, "rev-list", "--first-parent", `${first}..${head}`).split("\n")).toEqual([head, theirs]);
    expect(git(remote, "show", `${branch}:seen.txt`)).toBe("from review");
  }, 90_000);

  it("merges commits pushed during a turn before the next one instead of overwriting them", async () => {
    const remote = bareCopy(createRepo());
    const { task, branch } = await pushedTask(remote, "echo one > one.txt");
    const { theirs } = await followUpWhileSomeonePushes(task.id, "echo two > two.txt", () =>
      pushAsSomeoneElse(remote, branch, { "review.txt": "from review\n" }, "Reviewer's fix"),
    );
    const waiting = await deliveryOf(t, task.id, (d) => d.state === "pending" && d.error !== null, 60_000);
    expect(waiting.error).toMatch(/merged in before the next turn/);
    expect(refIn(remote, `refs/heads/${branch}`)).toBe(theirs); // refused, not forced

    await followUp(t, task.id, "cat review.txt two.txt > both.txt");
    await turnEnded(t, task.id);
    const delivery = await deliveryOf(t, task.id, (d) => d.state === "pushed" && d.pushedSha !== theirs, 60_000);
    const head = refIn(remote, `refs/heads/${branch}`)!;
    expect(delivery).toMatchObject({ pushedSha: head, error: null });
    expect(git(remote, "show", `${branch}:both.txt`)).toBe("from review\ntwo");
    git(remote, "merge-base", "--is-ancestor", theirs, head); // throws unless the reviewer's commit is kept
    const merge = git(remote, "log", "--merges", "--format=%P", `${theirs}..${head}`).split(" ");
    expect(merge).toContain(theirs);
  }, 120_000);

  it("reports a conflicting push on the task with its files, runs the next turn anyway, and never forces", async () => {
    const remote = bareCopy(createRepo());
    const { task, branch } = await pushedTask(remote, "echo base > shared.txt");
    const { theirs } = await followUpWhileSomeonePushes(task.id, "echo umbra > shared.txt", () =>
      pushAsSomeoneElse(remote, branch, { "shared.txt": "reviewer\n" }, "Reviewer's version"),
    );
    const conflict = await deliveryOf(t, task.id, (d) => d.state === "conflict", 60_000);
    expect(conflict.error).toContain("shared.txt");

    await followUp(t, task.id, "echo more > more.txt");
    await turnEnded(t, task.id);
    const row = await readTask(t, task.id);
    expect(row.status).toBe("COMPLETED");
    // The workspace kept Umbra's version; nothing was merged, nothing overwritten.
    expect(readFileSync(join(row.workspacePath!, "shared.txt"), "utf8")).toBe("umbra\n");
    await t.server.delivery.drain();
    await eventually(async () => (await getTask(t, task.id)).delivery.state === "conflict");
    expect(refIn(remote, `refs/heads/${branch}`)).toBe(theirs);
  }, 120_000);
});
