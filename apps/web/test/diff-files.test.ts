import { describe, expect, it } from "vitest";
import { buildTree, diffEntries, splitPatch } from "../src/diff-files";

const PATCH = `diff --git a/src/app.ts b/src/app.ts
index 1111111..2222222 100644
--- a/src/app.ts
+++ b/src/app.ts
@@ -1 +1,2 @@
 one
+two
diff --git a/src/lib/util.ts b/src/lib/util.ts
new file mode 100644
--- /dev/null
+++ b/src/lib/util.ts
@@ -0,0 +1 @@
+export {};
diff --git a/logo.png b/logo.png
new file mode 100644
index 0000000..3333333
Binary files /dev/null and b/logo.png differ
`;

describe("the Changes tab's model", () => {
  it("cuts a patch into one patch per file", () => {
    const files = splitPatch(PATCH);
    expect(files.map((f) => f.path)).toEqual(["src/app.ts", "src/lib/util.ts", "logo.png"]);
    expect(files[0]!.patch.startsWith("diff --git a/src/app.ts")).toBe(true);
    expect(files[0]!.patch.endsWith("+two\n")).toBe(true);
  });

  it("joins the server's counts with each file's patch and marks binary files", () => {
    const entries = diffEntries({
      baseCommitSha: "abc",
      branch: "umbra/t",
      patch: PATCH,
      files: [
        { path: "src/app.ts", additions: 1, deletions: 0 },
        { path: "src/lib/util.ts", additions: 1, deletions: 0 },
        { path: "logo.png", additions: 0, deletions: 0 },
      ],
    });
    expect(entries.map((e) => [e.path, e.additions, e.binary])).toEqual([
      ["src/app.ts", 1, false],
      ["src/lib/util.ts", 1, false],
      ["logo.png", 0, true],
    ]);
  });

  it("arranges paths as a tree with summed counts, directories first", () => {
    const tree = buildTree([
      { path: "b.txt", additions: 1, deletions: 0, patch: "", lines: 0, binary: false },
      { path: "src/app.ts", additions: 2, deletions: 1, patch: "", lines: 0, binary: false },
      { path: "src/lib/util.ts", additions: 3, deletions: 0, patch: "", lines: 0, binary: false },
    ]);
    expect([tree.additions, tree.deletions]).toEqual([6, 1]);
    expect(tree.children.map((c) => [c.name, c.additions, c.index ?? "dir"])).toEqual([
      ["src", 5, "dir"],
      ["b.txt", 1, 0],
    ]);
    expect(tree.children[0]!.children.map((c) => c.name)).toEqual(["lib", "app.ts"]);
  });

  it("joins a chain of single directories into one entry", () => {
    const tree = buildTree([{ path: "a/b/c/file.ts", additions: 1, deletions: 0, patch: "", lines: 0, binary: false }]);
    expect(tree.children.map((c) => c.name)).toEqual(["a/b/c"]);
  });
});
