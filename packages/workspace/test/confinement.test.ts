import { mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createLocalExecutor } from "../src/local-executor";
import { WorkspacePathError } from "../src/types";
import { initRepo, tempDir } from "./helpers";

async function workspace() {
  const root = await tempDir();
  await initRepo(root, { "README.md": "hello\n" });
  await mkdir(join(root, "docs"));
  await writeFile(join(root, "docs", "a.md"), "inside\n");
  return { root, executor: createLocalExecutor(root) };
}

describe("path confinement of the file tools", () => {
  it("refuses paths that climb out with ..", async () => {
    const { executor } = await workspace();
    await expect(executor.readFile("../outside.txt")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.writeFile("docs/../../escape.txt", "x")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.listDir("..")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.grep("x", { path: "../" })).rejects.toBeInstanceOf(WorkspacePathError);
  });

  it("refuses absolute paths, even ones inside the workspace", async () => {
    const { root, executor } = await workspace();
    await expect(executor.readFile("/etc/passwd")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.readFile(join(root, "README.md"))).rejects.toBeInstanceOf(WorkspacePathError);
  });

  it("allows .. that stays inside the workspace", async () => {
    const { executor } = await workspace();
    expect(await executor.readFile("docs/../README.md")).toBe("hello\n");
  });

  it("refuses a symlink whose target leaves the workspace, for reading, writing and listing", async () => {
    const { root, executor } = await workspace();
    await symlink("/etc", join(root, "etc-link"));
    await symlink("/etc/hostname", join(root, "hostname-link"));
    await expect(executor.readFile("etc-link/passwd")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.readFile("hostname-link")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.writeFile("etc-link/umbra-test-file", "x")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.listDir("etc-link")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.grep("root", { path: "etc-link" })).rejects.toBeInstanceOf(WorkspacePathError);
  });

  it("refuses writing through a dangling symlink that points outside", async () => {
    const { root, executor } = await workspace();
    const outside = await tempDir("umbra-outside-");
    await symlink(join(outside, "created-by-write"), join(root, "dangling"));
    await expect(executor.writeFile("dangling", "x")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(readFile(join(outside, "created-by-write"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("follows a symlink that stays inside the workspace", async () => {
    const { root, executor } = await workspace();
    await symlink("docs", join(root, "docs-link"));
    expect(await executor.readFile("docs-link/a.md")).toBe("inside\n");
    await executor.writeFile("docs-link/b.md", "via link\n");
    expect(await readFile(join(root, "docs", "b.md"), "utf8")).toBe("via link\n");
  });

  it("keeps git internals out of reach, directly or through a symlink", async () => {
    const { root, executor } = await workspace();
    await symlink(".git", join(root, "git-link"));
    await expect(executor.readFile(".git/config")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.writeFile(".git/hooks/pre-commit", "x")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.listDir(".git")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.readFile("git-link/config")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.readFile("docs/../.git/HEAD")).rejects.toBeInstanceOf(WorkspacePathError);
  });

  it("names the refused path and the reason in the error", async () => {
    const { executor } = await workspace();
    const error = await executor.readFile("../secret").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkspacePathError);
    expect((error as WorkspacePathError).path).toBe("../secret");
    expect((error as WorkspacePathError).reason).toMatch(/outside/);
  });
});
