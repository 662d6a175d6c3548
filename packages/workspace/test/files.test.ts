import { mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createLocalExecutor } from "../src/local-executor";
import { WorkspaceOperationError } from "../src/types";
import { initRepo, tempDir } from "./helpers";

async function workspace(files: Record<string, string> = {}) {
  const root = await tempDir();
  await initRepo(root, { "README.md": "hello\n", ...files });
  return { root, executor: createLocalExecutor(root) };
}

async function operationCode(promise: Promise<unknown>): Promise<string | undefined> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(WorkspaceOperationError);
  return (error as WorkspaceOperationError).code;
}

describe("reading and writing files", () => {
  it("writes a file into directories that do not exist yet and reads it back", async () => {
    const { root, executor } = await workspace();
    await executor.writeFile("src/deep/nested/file.ts", "export const x = 1;\n");
    expect(await executor.readFile("src/deep/nested/file.ts")).toBe("export const x = 1;\n");
    expect(await readFile(join(root, "src/deep/nested/file.ts"), "utf8")).toBe("export const x = 1;\n");
  });

  it("reports a missing file as NOT_FOUND and a directory as NOT_A_FILE", async () => {
    const { root, executor } = await workspace();
    await mkdir(join(root, "dir"));
    expect(await operationCode(executor.readFile("missing.txt"))).toBe("NOT_FOUND");
    expect(await operationCode(executor.readFile("dir"))).toBe("NOT_A_FILE");
  });

  it("refuses to read a file larger than 1 MiB", async () => {
    const { root, executor } = await workspace();
    await writeFile(join(root, "big.txt"), "x".repeat(1024 * 1024 + 1));
    expect(await operationCode(executor.readFile("big.txt"))).toBe("TOO_LARGE");
  });
});

describe("editing files", () => {
  it("replaces a search text that occurs exactly once", async () => {
    const { executor } = await workspace({ "a.ts": "const a = 1;\nconst b = 2;\n" });
    expect(await executor.editFile("a.ts", "b = 2", "b = 3")).toEqual({ replacements: 1 });
    expect(await executor.readFile("a.ts")).toBe("const a = 1;\nconst b = 3;\n");
  });

  it("refuses a search text that does not occur", async () => {
    const { executor } = await workspace({ "a.ts": "const a = 1;\n" });
    expect(await operationCode(executor.editFile("a.ts", "nope", "x"))).toBe("NO_MATCH");
  });

  it("refuses an ambiguous search text and leaves the file untouched", async () => {
    const { executor } = await workspace({ "a.ts": "x\nx\n" });
    expect(await operationCode(executor.editFile("a.ts", "x", "y"))).toBe("AMBIGUOUS_MATCH");
    expect(await executor.readFile("a.ts")).toBe("x\nx\n");
  });

  it("replaces every occurrence when asked to, and counts them", async () => {
    const { executor } = await workspace({ "a.ts": "x x x\n" });
    expect(await executor.editFile("a.ts", "x", "y", { all: true })).toEqual({ replacements: 3 });
    expect(await executor.readFile("a.ts")).toBe("y y y\n");
  });

  it("inserts the replacement literally, without $ patterns", async () => {
    const { executor } = await workspace({ "a.ts": "price\n" });
    await executor.editFile("a.ts", "price", "$& costs $1");
    expect(await executor.readFile("a.ts")).toBe("$& costs $1\n");
  });

  it("refuses an empty search text", async () => {
    const { executor } = await workspace({ "a.ts": "x\n" });
    expect(await operationCode(executor.editFile("a.ts", "", "y"))).toBe("INVALID");
  });
});

describe("listing directories", () => {
  it("lists every entry, sorted, with its type and size", async () => {
    const { root, executor } = await workspace({ "b.txt": "bb" });
    await mkdir(join(root, "a-dir"));
    await symlink("b.txt", join(root, "c-link"));
    const entries = await executor.listDir(".");
    expect(entries.map((e) => [e.name, e.type])).toEqual([
      [".git", "dir"],
      ["README.md", "file"],
      ["a-dir", "dir"],
      ["b.txt", "file"],
      ["c-link", "symlink"],
    ]);
    expect(entries.find((e) => e.name === "b.txt")?.size).toBe(2);
  });

  it("reports a missing directory as NOT_FOUND and a file as NOT_A_DIRECTORY", async () => {
    const { executor } = await workspace();
    expect(await operationCode(executor.listDir("nope"))).toBe("NOT_FOUND");
    expect(await operationCode(executor.listDir("README.md"))).toBe("NOT_A_DIRECTORY");
  });
});

describe("grep", () => {
  it("finds matching lines with path and 1-based line number", async () => {
    const { root, executor } = await workspace({ "a.ts": "one\nTODO: two\nthree\n" });
    await mkdir(join(root, "src"));
    await writeFile(join(root, "src", "b.ts"), "// TODO later\n");
    expect(await executor.grep("TODO")).toEqual([
      { path: "a.ts", line: 2, text: "TODO: two" },
      { path: "src/b.ts", line: 1, text: "// TODO later" },
    ]);
  });

  it("skips .git, node_modules and binary files", async () => {
    const { root, executor } = await workspace({ "a.ts": "needle\n" });
    await mkdir(join(root, "node_modules", "pkg"), { recursive: true });
    await writeFile(join(root, "node_modules", "pkg", "index.js"), "needle\n");
    await writeFile(join(root, "image.bin"), Buffer.from("needle\0\x01\x02"));
    await writeFile(join(root, ".git", "needle-file"), "needle\n");
    const matches = await executor.grep("needle");
    expect(matches.map((m) => m.path)).toEqual(["a.ts"]);
  });

  it("honours ignoreCase, maxResults and a starting path", async () => {
    const { root, executor } = await workspace({ "a.ts": "Foo\nfoo\nFOO\n" });
    await mkdir(join(root, "sub"));
    await writeFile(join(root, "sub", "b.ts"), "foo\n");
    expect(await executor.grep("foo")).toHaveLength(2);
    expect(await executor.grep("foo", { ignoreCase: true })).toHaveLength(4);
    expect(await executor.grep("foo", { ignoreCase: true, maxResults: 2 })).toHaveLength(2);
    expect(await executor.grep("foo", { path: "sub" })).toEqual([{ path: "sub/b.ts", line: 1, text: "foo" }]);
  });

  it("reports an invalid regular expression as INVALID", async () => {
    const { executor } = await workspace();
    expect(await operationCode(executor.grep("(unclosed"))).toBe("INVALID");
  });
});
