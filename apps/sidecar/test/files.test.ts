import { mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { WorkspaceOperationError, WorkspacePathError } from "@repo/workspace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initRepo, type RunningSidecar, removeTempDirs, startSidecar, tempDir } from "./helpers";

let sidecar: RunningSidecar;

beforeAll(async () => {
  const workspace = await tempDir();
  await initRepo(workspace, { "README.md": "hello\n", "app.ts": "const port = 3000;\n// TODO: tests\n" });
  await mkdir(join(workspace, "docs"));
  await writeFile(join(workspace, "docs", "guide.md"), "guide\n");
  await symlink("/etc", join(workspace, "etc-link"));
  await symlink("docs", join(workspace, "docs-link"));
  sidecar = await startSidecar(workspace);
});

afterAll(async () => {
  await sidecar.stop();
  expect(sidecar.output()).not.toContain(sidecar.token);
  await removeTempDirs();
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

describe("file operations through the sidecar", () => {
  it("writes, reads, edits, lists and greps files in the workspace", async () => {
    const { client, workspace } = sidecar;
    await client.writeFile("src/new/file.ts", "export const a = 1;\n");
    expect(await readFile(join(workspace, "src/new/file.ts"), "utf8")).toBe("export const a = 1;\n");
    expect(await client.readFile("src/new/file.ts")).toBe("export const a = 1;\n");
    expect(await client.editFile("app.ts", "3000", "8080")).toEqual({ replacements: 1 });
    expect(await client.readFile("app.ts")).toBe("const port = 8080;\n// TODO: tests\n");
    expect((await client.listDir("docs")).map((e) => [e.name, e.type])).toEqual([["guide.md", "file"]]);
    expect(await client.grep("todo", { ignoreCase: true })).toEqual([
      { path: "app.ts", line: 2, text: "// TODO: tests" },
    ]);
  });

  it("follows a symlink that stays inside the workspace", async () => {
    expect(await sidecar.client.readFile("docs-link/guide.md")).toBe("guide\n");
  });

  it.each([
    ["a .. escape", "../outside.txt"],
    ["an absolute path", "/etc/passwd"],
    ["a symlink escape", "etc-link/passwd"],
    ["git internals", ".git/config"],
  ])("refuses %s with a WorkspacePathError", async (_name, path) => {
    const { client } = sidecar;
    // One request at a time: a rejection nobody awaits yet would count as unhandled.
    for (const attempt of [
      () => client.readFile(path),
      () => client.writeFile(path, "x"),
      () => client.listDir(path),
      () => client.editFile(path, "a", "b"),
      () => client.grep("root", { path }),
    ]) {
      const error = await rejection(attempt());
      expect(error).toBeInstanceOf(WorkspacePathError);
      expect((error as WorkspacePathError).path).toBe(path);
    }
  });

  it("maps a missing file to NOT_FOUND", async () => {
    const error = await rejection(sidecar.client.readFile("missing.txt"));
    expect(error).toBeInstanceOf(WorkspaceOperationError);
    expect(error).toMatchObject({ code: "NOT_FOUND" });
  });

  it("maps edit mismatches to NO_MATCH and AMBIGUOUS_MATCH", async () => {
    await sidecar.client.writeFile("twice.txt", "x x\n");
    expect(await rejection(sidecar.client.editFile("twice.txt", "y", "z"))).toMatchObject({ code: "NO_MATCH" });
    expect(await rejection(sidecar.client.editFile("twice.txt", "x", "z"))).toMatchObject({
      code: "AMBIGUOUS_MATCH",
    });
    expect(await sidecar.client.editFile("twice.txt", "x", "z", { all: true })).toEqual({ replacements: 2 });
  });

  it("answers an invalid body with 400 VALIDATION_ERROR and changes nothing", async () => {
    const response = await fetch(`${sidecar.endpoint}/files/write`, {
      method: "POST",
      headers: { authorization: `Bearer ${sidecar.token}`, "content-type": "application/json" },
      body: JSON.stringify({ path: "invalid.txt", content: 42 }),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "VALIDATION_ERROR" } });
    expect(await rejection(sidecar.client.readFile("invalid.txt"))).toMatchObject({ code: "NOT_FOUND" });
  });

  it("answers malformed JSON with 400 VALIDATION_ERROR", async () => {
    const response = await fetch(`${sidecar.endpoint}/files/read`, {
      method: "POST",
      headers: { authorization: `Bearer ${sidecar.token}` },
      body: "{not json",
    });
    expect(response.status).toBe(400);
  });
});
