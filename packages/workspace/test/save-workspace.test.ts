import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SaveRefusedError, saveWorkspace } from "../src/save-workspace";
import { initRepo, TEST_GIT_ENV, tempDir, testGit } from "./helpers";

const BRANCH = "umbra/task-1";

/** Runs a shell script in the workspace the way an agent would. */
function agent(repo: string, script: string): void {
  execFileSync("sh", ["-ec", script], { cwd: repo, env: TEST_GIT_ENV, stdio: "pipe" });
}

/** A workspace on the task branch with one saved commit (`saved`) past the initial one (`initial`). */
async function workspace() {
  const repo = await tempDir();
  const initial = await initRepo(repo, { "README.md": "readme\n", "keep.txt": "keep\n", ".gitignore": "*.log\n" });
  agent(repo, `git checkout -q -b ${BRANCH} && echo saved > saved.txt && git add -A && git commit -q -m saved`);
  const saved = await testGit(repo, ["rev-parse", "HEAD"]);
  return { repo, initial, saved };
}

const show = (repo: string, rev: string, path: string) => testGit(repo, ["show", `${rev}:${path}`]);
const filesAt = async (repo: string, rev: string) =>
  (await testGit(repo, ["ls-tree", "-r", "--name-only", rev])).split("\n").sort();
const isAncestor = async (repo: string, ancestor: string, descendant: string) =>
  testGit(repo, ["merge-base", "--is-ancestor", ancestor, descendant]).then(
    () => true,
    () => false,
  );

/** After any save: the workspace is on the task branch at the result, clean, and the result descends from the base. */
async function expectLeftOnBranch(repo: string, head: string, base: string): Promise<void> {
  expect(await testGit(repo, ["symbolic-ref", "HEAD"])).toBe(`refs/heads/${BRANCH}`);
  expect(await testGit(repo, ["rev-parse", BRANCH])).toBe(head);
  expect(await testGit(repo, ["status", "--porcelain", "--untracked-files=all"])).toBe("");
  expect(await isAncestor(repo, base, head)).toBe(true);
}

describe("saving whatever the agent left", () => {
  it("saves a clean workspace as the last saved commit, without a new commit", async () => {
    const { repo, saved } = await workspace();
    const result = await saveWorkspace(repo, { branch: BRANCH, base: saved, message: "turn" });
    expect(result).toEqual({
      head: saved,
      base: saved,
      committed: false,
      rewritten: false,
      previous: { head: saved, branch: BRANCH },
    });
    await expectLeftOnBranch(repo, saved, saved);
  });

  it("commits modified, staged, deleted and untracked files, and leaves ignored files on disk unsaved", async () => {
    const { repo, saved } = await workspace();
    agent(
      repo,
      "echo changed > README.md && echo staged > staged.txt && git add staged.txt && rm keep.txt && mkdir -p new/dir && echo untracked > new/dir/file.txt && echo noise > debug.log",
    );
    const result = await saveWorkspace(repo, { branch: BRANCH, base: saved, message: "Umbra turn: edit" });
    expect(result).toMatchObject({ committed: true, rewritten: false });
    expect(await testGit(repo, ["log", "-1", "--format=%s|%an|%P", result.head])).toBe(
      `Umbra turn: edit|Umbra Agent|${saved}`,
    );
    expect(await filesAt(repo, result.head)).toEqual([
      ".gitignore",
      "README.md",
      "new/dir/file.txt",
      "saved.txt",
      "staged.txt",
    ]);
    expect(await show(repo, result.head, "README.md")).toBe("changed");
    expect(existsSync(join(repo, "debug.log"))).toBe(true);
    await expectLeftOnBranch(repo, result.head, saved);
  });

  it("keeps the agent's own commits when they continue the task branch, plus one for what it left uncommitted", async () => {
    const { repo, saved } = await workspace();
    agent(
      repo,
      "echo one > one.txt && git add -A && git commit -q -m one && echo two > two.txt && git add -A && git commit -q -m two && echo dirty > dirty.txt",
    );
    const two = await testGit(repo, ["rev-parse", "HEAD"]);
    const result = await saveWorkspace(repo, { branch: BRANCH, base: saved, message: "turn" });
    expect(result).toMatchObject({ committed: true, rewritten: false });
    expect(await testGit(repo, ["log", "--format=%s", `${saved}..${result.head}`])).toBe("turn\ntwo\none");
    expect(await testGit(repo, ["rev-parse", `${result.head}^`])).toBe(two);
    await expectLeftOnBranch(repo, result.head, saved);
  });

  it("puts an amended commit's files on top of the last saved commit, which stays in the history", async () => {
    const { repo, saved } = await workspace();
    agent(repo, "echo amended > saved.txt && git add -A && git commit -q --amend -m amended");
    const result = await saveWorkspace(repo, { branch: BRANCH, base: saved, message: "turn" });
    expect(result).toMatchObject({ committed: true, rewritten: true, previous: { branch: BRANCH } });
    expect(await testGit(repo, ["rev-parse", `${result.head}^`])).toBe(saved);
    expect(await show(repo, result.head, "saved.txt")).toBe("amended");
    expect(await testGit(repo, ["log", "-1", "--format=%B", result.head])).toMatch(/did not continue the task branch/);
    await expectLeftOnBranch(repo, result.head, saved);
  });

  it("puts a rebased history's files on top of the last saved commit", async () => {
    const { repo, saved } = await workspace();
    agent(repo, "git checkout -q main && echo upstream > upstream.txt && git add -A && git commit -q -m upstream");
    agent(repo, `git checkout -q ${BRANCH} && git rebase -q main`);
    const result = await saveWorkspace(repo, { branch: BRANCH, base: saved, message: "turn" });
    expect(result).toMatchObject({ committed: true, rewritten: true });
    expect(await testGit(repo, ["rev-parse", `${result.head}^`])).toBe(saved);
    expect(await filesAt(repo, result.head)).toEqual([
      ".gitignore",
      "README.md",
      "keep.txt",
      "saved.txt",
      "upstream.txt",
    ]);
    await expectLeftOnBranch(repo, result.head, saved);
  });

  it("fast-forwards to commits made on a detached HEAD and on a new branch", async () => {
    const { repo, saved } = await workspace();
    agent(repo, "git checkout -q --detach && echo detached > detached.txt && git add -A && git commit -q -m detached");
    const detached = await testGit(repo, ["rev-parse", "HEAD"]);
    const first = await saveWorkspace(repo, { branch: BRANCH, base: saved, message: "turn" });
    expect(first).toEqual({
      head: detached,
      base: saved,
      committed: false,
      rewritten: false,
      previous: { head: detached, branch: null },
    });
    await expectLeftOnBranch(repo, detached, saved);

    agent(repo, "git checkout -q -b feature && echo feature > feature.txt && git add -A && git commit -q -m feature");
    const second = await saveWorkspace(repo, { branch: BRANCH, base: detached, message: "turn" });
    expect(second).toMatchObject({ committed: false, rewritten: false, previous: { branch: "feature" } });
    expect(await testGit(repo, ["rev-parse", `${second.head}^`])).toBe(detached);
    expect(await testGit(repo, ["rev-parse", "feature"])).toBe(second.head);
    await expectLeftOnBranch(repo, second.head, detached);
  });

  it("saves a switch to an unrelated branch, and a reset to an older commit, as new commits on the last saved one", async () => {
    const { repo, saved, initial } = await workspace();
    agent(
      repo,
      "git checkout -q --orphan fresh && git rm -rq --cached . && rm -f README.md keep.txt saved.txt .gitignore && echo alone > alone.txt",
    );
    const orphan = await saveWorkspace(repo, { branch: BRANCH, base: saved, message: "turn" });
    expect(orphan).toMatchObject({ committed: true, rewritten: true, previous: { head: null, branch: "fresh" } });
    expect(await filesAt(repo, orphan.head)).toEqual(["alone.txt"]);
    await expectLeftOnBranch(repo, orphan.head, saved);

    agent(repo, `git reset -q --hard ${initial}`);
    const reset = await saveWorkspace(repo, { branch: BRANCH, base: orphan.head, message: "turn" });
    expect(reset).toMatchObject({ committed: true, rewritten: true });
    expect(await testGit(repo, ["rev-parse", `${reset.head}^{tree}`])).toBe(
      await testGit(repo, ["rev-parse", `${initial}^{tree}`]),
    );
    await expectLeftOnBranch(repo, reset.head, orphan.head);
    expect(await isAncestor(repo, saved, reset.head)).toBe(true);
  });

  it("saves a conflicted merge as the files stand and forgets the interrupted merge", async () => {
    const { repo, saved } = await workspace();
    agent(repo, "git checkout -q -b other main && echo theirs > saved.txt && git add -A && git commit -q -m theirs");
    agent(repo, `git checkout -q ${BRANCH} && (git merge -q other || true)`);
    expect(existsSync(join(repo, ".git", "MERGE_HEAD"))).toBe(true);
    const result = await saveWorkspace(repo, { branch: BRANCH, base: saved, message: "turn" });
    expect(result).toMatchObject({ committed: true, rewritten: false });
    expect(await show(repo, result.head, "saved.txt")).toMatch(/<<<<<<<[\s\S]*saved[\s\S]*theirs[\s\S]*>>>>>>>/);
    expect(existsSync(join(repo, ".git", "MERGE_HEAD"))).toBe(false);
    await expectLeftOnBranch(repo, result.head, saved);
  });

  it("saves despite an index git cannot read", async () => {
    const { repo, saved } = await workspace();
    await writeFile(join(repo, ".git", "index"), "garbage");
    await writeFile(join(repo, "after.txt"), "after\n");
    const result = await saveWorkspace(repo, { branch: BRANCH, base: saved, message: "turn" });
    expect(await filesAt(repo, result.head)).toEqual([".gitignore", "README.md", "after.txt", "keep.txt", "saved.txt"]);
    await expectLeftOnBranch(repo, result.head, saved);
  });

  it("refuses a workspace without a repository, and a last saved commit it lacks, changing nothing", async () => {
    const { repo, saved } = await workspace();
    await writeFile(join(repo, "pending.txt"), "pending\n");
    const unknown = "1234567890123456789012345678901234567890";
    const missingBase = await saveWorkspace(repo, { branch: BRANCH, base: unknown, message: "turn" }).catch((e) => e);
    expect(missingBase).toBeInstanceOf(SaveRefusedError);
    expect(missingBase).toMatchObject({ code: "BASE_MISSING" });
    expect(await testGit(repo, ["status", "--porcelain"])).toBe("?? pending.txt");

    await rm(join(repo, ".git"), { recursive: true });
    const noRepository = await saveWorkspace(repo, { branch: BRANCH, base: saved, message: "turn" }).catch((e) => e);
    expect(noRepository).toMatchObject({ code: "NO_REPOSITORY" });
  });
});
