import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readHead } from "../src/git";
import { createLocalExecutor } from "../src/local-executor";
import { WorkspaceOperationError } from "../src/types";
import { initRepo, tempDir, testGit } from "./helpers";

async function executorFor(root: string) {
  return createLocalExecutor(root, { home: await tempDir("umbra-home-") });
}

describe("commitAll", () => {
  it("commits modified, deleted and untracked files as the agent", async () => {
    const root = await tempDir();
    const base = await initRepo(root, { "keep.txt": "v1\n", "gone.txt": "bye\n" });
    await writeFile(join(root, "keep.txt"), "v2\n");
    await rm(join(root, "gone.txt"));
    await writeFile(join(root, "new.txt"), "hi\n");

    const result = await (await executorFor(root)).commitAll("Agent turn 1");

    expect(result.committed).toBe(true);
    expect(result.sha).toBe(await testGit(root, ["rev-parse", "HEAD"]));
    expect(await testGit(root, ["rev-parse", "HEAD^"])).toBe(base);
    const changes = await testGit(root, ["show", "--name-status", "--format=%an <%ae>|%s", "HEAD"]);
    expect(changes.split("\n")).toEqual([
      "Umbra Agent <agent@umbra.local>|Agent turn 1",
      "",
      "D\tgone.txt",
      "M\tkeep.txt",
      "A\tnew.txt",
    ]);
    expect(await testGit(root, ["status", "--porcelain"])).toBe("");
  });

  it("reports nothing to commit without creating a commit", async () => {
    const root = await tempDir();
    const base = await initRepo(root, { "a.txt": "a\n" });
    expect(await (await executorFor(root)).commitAll("noop")).toEqual({ sha: base, committed: false });
    expect((await readHead(root)).head).toBe(base);
  });

  it("refuses a workspace that is not a git repository, even inside one", async () => {
    const outer = await tempDir();
    await initRepo(outer, { "a.txt": "a\n" });
    const inner = join(outer, "nested");
    await mkdir(inner);
    const executor = await executorFor(inner);
    await executor.writeFile("b.txt", "b\n");
    await expect(executor.commitAll("x")).rejects.toBeInstanceOf(WorkspaceOperationError);
  });
});
