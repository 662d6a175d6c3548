/**
 * checkoutTask on a real repository where Umbra already delivered the task
 * branch (DELIVERY=branch pushes it into a local repository): the branch is
 * switched to as it is, without asking the server for patches; a branch of
 * the same name that is not the delivered one is still refused.
 */
import { describe, expect, it } from "vitest";
import { createRepo, git } from "../../../test/support/git";
import { taskDto } from "../../../test/support/task-dto";
import { type CheckoutError, checkoutTask } from "../src/checkout";
import type { Client, Task } from "../src/client";

const unreachable = new Proxy({} as Client, {
  get: (_target, name) => () => {
    throw new Error(`the server was asked for ${String(name)}`);
  },
});

function deliveredTask(repo: string, id: string): Task {
  const base = git(repo, "rev-parse", "HEAD");
  const branch = `umbra/${id}`;
  git(repo, "switch", "--quiet", "-c", branch);
  git(repo, "commit", "--quiet", "--allow-empty", "-m", "the agent's work");
  const pushedSha = git(repo, "rev-parse", "HEAD");
  git(repo, "switch", "--quiet", "main");
  const dto = taskDto({ id, branch, baseCommitSha: base });
  return { ...dto, delivery: { ...dto.delivery!, state: "pushed", pushedSha } } as Task;
}

describe("umbra checkout where Umbra delivered the branch already", () => {
  const id = "0b9e4d7e-6a0f-4f5e-9c39-2f4b8c1d2e3f";

  it("switches to the delivered branch as it is", async () => {
    const repo = createRepo({ "README.md": "# Demo\n" });
    const task = deliveredTask(repo, id);
    const result = await checkoutTask(unreachable, task, repo);
    expect(result).toEqual({ branch: `umbra/${id}`, commits: 1, switched: true, source: "delivered" });
    expect(git(repo, "rev-parse", "--abbrev-ref", "HEAD")).toBe(`umbra/${id}`);
  });

  it("refuses a branch of that name that is not the delivered one", async () => {
    const repo = createRepo({ "README.md": "# Demo\n" });
    const task = deliveredTask(repo, id);
    git(repo, "branch", "--force", `umbra/${id}`, "main");
    const refused = await checkoutTask(unreachable, task, repo).catch((error: CheckoutError) => error);
    expect((refused as Error).message).toContain("already exists here; use --force");
    expect(git(repo, "rev-parse", "--abbrev-ref", "HEAD")).toBe("main");
  });
});
