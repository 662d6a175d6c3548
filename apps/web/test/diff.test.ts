import { describe, expect, it } from "vitest";
import { parsePatch } from "../src/diff";

const PATCH = `diff --git a/hello.txt b/hello.txt
new file mode 100644
index 0000000..3c3c5d1
--- /dev/null
+++ b/hello.txt
@@ -0,0 +1,2 @@
+hello
+more
diff --git a/README.md b/README.md
index 1111111..2222222 100644
--- a/README.md
+++ b/README.md
@@ -1,3 +1,3 @@
 # Demo
--- old line
+new line
 end
\\ No newline at end of file
`;

describe("parsePatch", () => {
  it("splits a patch per file and classifies every line", () => {
    const sections = parsePatch(PATCH);
    expect(sections.map((s) => s.path)).toEqual(["hello.txt", "README.md"]);
    expect(sections[0]?.lines.map((l) => l.kind)).toEqual([
      "meta",
      "meta",
      "meta",
      "meta",
      "meta",
      "hunk",
      "add",
      "add",
    ]);
    // Inside a hunk, "--- old line" is a removed line, not a file header.
    expect(sections[1]?.lines.slice(4).map((l) => [l.kind, l.text])).toEqual([
      ["hunk", "@@ -1,3 +1,3 @@"],
      ["context", " # Demo"],
      ["del", "--- old line"],
      ["add", "+new line"],
      ["context", " end"],
      ["note", "\\ No newline at end of file"],
    ]);
  });

  it("returns nothing for an empty patch", () => {
    expect(parsePatch("")).toEqual([]);
  });
});
