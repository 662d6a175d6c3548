import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SidecarError } from "@repo/workspace";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { initRepo, type RunningSidecar, removeTempDirs, startSidecar, tempDir, testGit } from "./helpers";

const running: RunningSidecar[] = [];

afterEach(async () => {
  for (const sidecar of running.splice(0)) {
    await sidecar.stop();
    expect(sidecar.output()).not.toContain(sidecar.token);
  }
});

afterAll(removeTempDirs);

async function sidecarOnEmptyWorkspace() {
  const sidecar = await startSidecar(await tempDir());
  running.push(sidecar);
  return sidecar;
}

/** A source repository with a task branch, and a bundle of that branch. */
async function sourceBundle(branch = "umbra/task-1") {
  const source = await tempDir();
  await initRepo(source, { "README.md": "hello\n" });
  await testGit(source, ["checkout", "-q", "-b", branch]);
  await writeFile(join(source, "work.txt"), "earlier turn\n");
  await testGit(source, ["add", "-A"]);
  await testGit(source, ["commit", "-q", "-m", "earlier turn"]);
  const head = await testGit(source, ["rev-parse", "HEAD"]);
  const file = join(source, "..", `${branch.replaceAll("/", "-")}-${Date.now()}.bundle`);
  await testGit(source, ["bundle", "create", "-q", file, `refs/heads/${branch}`]);
  return { source, head, branch, bundle: await readFile(file) };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

describe("moving a branch through the sidecar", () => {
  it("round-trips a branch: receive, uncommitted work, bundle with the work committed", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { head, branch, bundle } = await sourceBundle();

    expect(await sidecar.client.receiveBranch(branch, bundle)).toEqual({ head, branch });
    expect(await sidecar.client.health()).toMatchObject({ head, branch });
    expect(await sidecar.client.readFile("work.txt")).toBe("earlier turn\n");

    await sidecar.client.writeFile("agent.txt", "written by the agent\n");
    const saved = await sidecar.client.bundleBranch(branch, "Agent turn 2");
    expect(saved.head).not.toBe(head);

    const fresh = await tempDir();
    await testGit(fresh, ["init", "-q"]);
    const bundleFile = join(fresh, "..", "saved.bundle");
    await writeFile(bundleFile, saved.bundle);
    await testGit(fresh, ["fetch", "-q", bundleFile, `refs/heads/${branch}:refs/heads/${branch}`]);
    expect(await testGit(fresh, ["rev-parse", branch])).toBe(saved.head);
    expect(await testGit(fresh, ["show", `${branch}:agent.txt`])).toBe("written by the agent");
    expect(await testGit(fresh, ["log", "-1", "--format=%s|%an", branch])).toBe("Agent turn 2|Umbra Agent");
    expect(await testGit(fresh, ["rev-parse", `${branch}^`])).toBe(head);
  });

  it("bundles without a new commit when the workspace is clean", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { head, branch, bundle } = await sourceBundle();
    await sidecar.client.receiveBranch(branch, bundle);
    expect((await sidecar.client.bundleBranch(branch)).head).toBe(head);
  });

  it("fast-forwards a clean workspace to a newer bundle of the branch", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { source, branch, bundle } = await sourceBundle();
    await sidecar.client.receiveBranch(branch, bundle);
    await writeFile(join(source, "later.txt"), "later\n");
    await testGit(source, ["add", "-A"]);
    await testGit(source, ["commit", "-q", "-m", "later"]);
    const newer = join(source, "..", "newer.bundle");
    await testGit(source, ["bundle", "create", "-q", newer, `refs/heads/${branch}`]);
    const tip = await testGit(source, ["rev-parse", "HEAD"]);
    expect(await sidecar.client.receiveBranch(branch, await readFile(newer))).toEqual({ head: tip, branch });
    expect(await sidecar.client.readFile("later.txt")).toBe("later\n");
  });

  it("refuses to receive over uncommitted work", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { branch, bundle } = await sourceBundle();
    await sidecar.client.receiveBranch(branch, bundle);
    await sidecar.client.writeFile("unsaved.txt", "precious\n");
    expect(await rejection(sidecar.client.receiveBranch(branch, bundle))).toMatchObject({
      status: 409,
      code: "WORKSPACE_DIRTY",
    });
    expect(await sidecar.client.readFile("unsaved.txt")).toBe("precious\n");
  });

  it("refuses to receive a bundle that lacks commits the workspace's branch has", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { branch, bundle } = await sourceBundle();
    await sidecar.client.receiveBranch(branch, bundle);
    await sidecar.client.writeFile("committed.txt", "not yet saved anywhere\n");
    await sidecar.client.commitAll("local work");
    const error = await rejection(sidecar.client.receiveBranch(branch, bundle));
    expect(error).toBeInstanceOf(SidecarError);
    expect(error).toMatchObject({ status: 409, code: "WORKSPACE_DIVERGED" });
  });

  it("refuses a body that is not a bundle of the branch", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { bundle } = await sourceBundle();
    expect(await rejection(sidecar.client.receiveBranch("other-branch", bundle))).toMatchObject({
      status: 400,
      code: "VALIDATION_ERROR",
    });
    expect(await rejection(sidecar.client.receiveBranch("main", Buffer.from("not a bundle")))).toMatchObject({
      status: 400,
    });
  });

  it("refuses to bundle a branch that is not checked out", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { branch, bundle } = await sourceBundle();
    await sidecar.client.receiveBranch(branch, bundle);
    expect(await rejection(sidecar.client.bundleBranch("main"))).toMatchObject({
      status: 409,
      code: "BRANCH_MISMATCH",
    });
  });

  it("commits through /git/commit and reports when there was nothing to commit", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { head, branch, bundle } = await sourceBundle();
    await sidecar.client.receiveBranch(branch, bundle);
    expect(await sidecar.client.commitAll("nothing")).toEqual({ sha: head, committed: false });
    await sidecar.client.writeFile("x.txt", "x\n");
    const result = await sidecar.client.commitAll("something");
    expect(result.committed).toBe(true);
    expect((await sidecar.client.health()).head).toBe(result.sha);
  });
});
