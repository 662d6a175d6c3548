/**
 * The read-only repository routes against a real server with real git
 * repositories: the branch picker's GET /api/repositories/branches and the
 * file browser's GET /api/tasks/:id/files, on PGlite and Postgres.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TaskDto } from "@repo/types";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { createRepo, git, tempDir } from "../../../test/support/git";
import { EventRecorder, startTestServer, type TestServer } from "../../../test/support/server";

const targets = await databaseTargets();

type ErrorBody = { error: { code: string; message: string } };

describe.each(targets)("repository routes on $name", (target) => {
  let database: TestDatabase;
  let t: TestServer;

  beforeAll(async () => {
    database = await target.open();
    t = await startTestServer({ database });
  });
  afterAll(async () => {
    await t.close();
    await database.close();
  });

  it("lists a repository's branches and its default branch, including one pushed after the first look", async () => {
    const repo = createRepo({ "README.md": "# Demo\n" }, "trunk");
    git(repo, "branch", "feature/login");
    const first = await t.api<{ defaultBranch: string | null; branches: string[] }>(
      "GET",
      `/api/repositories/branches?repoUrl=${encodeURIComponent(repo)}`,
    );
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ defaultBranch: "trunk", branches: ["feature/login", "trunk"] });

    git(repo, "branch", "release-1");
    const second = await t.api<{ branches: string[] }>(
      "GET",
      `/api/repositories/branches?repoUrl=${encodeURIComponent(repo)}`,
    );
    expect(second.body.branches).toEqual(["feature/login", "release-1", "trunk"]);
  });

  it("answers an empty repository with no default branch and no branches", async () => {
    const empty = tempDir("umbra-empty-");
    git(empty, "init", "--quiet", "-b", "main");
    const reply = await t.api("GET", `/api/repositories/branches?repoUrl=${encodeURIComponent(empty)}`);
    expect(reply).toEqual({ status: 200, body: { defaultBranch: null, branches: [] } });
  });

  it("refuses a missing or malformed repoUrl and a repository that cannot be fetched with 400", async () => {
    const missing = await t.api<ErrorBody>("GET", "/api/repositories/branches");
    expect(missing.status).toBe(400);
    expect(missing.body.error.code).toBe("VALIDATION_ERROR");
    expect(missing.body.error.message).toMatch(/^repoUrl: /);

    const relative = await t.api<ErrorBody>("GET", "/api/repositories/branches?repoUrl=relative/path");
    expect(relative.status).toBe(400);
    expect(relative.body.error.message).toContain("git URL");

    const nowhere = join(tempDir("umbra-nowhere-"), "absent");
    const unreadable = await t.api<ErrorBody>(
      "GET",
      `/api/repositories/branches?repoUrl=${encodeURIComponent(nowhere)}`,
    );
    expect(unreadable.status).toBe(400);
    expect(unreadable.body.error.message).toContain("cannot fetch");
  });

  it("browses the task branch: the root (directories first, then files A–Z ignoring case), a directory, a text file, a binary file, and 404/400 for bad paths", async () => {
    const repo = createRepo({ "README.md": "# Demo\n", "src/app.ts": "export const one = 1;\n" });
    writeFileSync(join(repo, "logo.bin"), Buffer.from([0x89, 0x50, 0x00, 0x01, 0x02]));
    git(repo, "add", "-A");
    git(repo, "commit", "--quiet", "-m", "binary");
    const recorder = new EventRecorder(t.url);
    try {
      const created = await t.api<{ task: TaskDto }>("POST", "/api/tasks", {
        repoUrl: repo,
        message: "mkdir -p docs && echo guide > docs/guide.md",
      });
      const { task } = created.body;
      await recorder.join(task.id);
      await recorder.waitFor(
        (e) => e.name === "stream-chunk" && e.payload.type === "turn-end" && e.payload.taskId === task.id,
      );

      const root = await t.api<{ type: string; commit: string; entries: unknown[] }>(
        "GET",
        `/api/tasks/${task.id}/files`,
      );
      expect(root.status).toBe(200);
      expect(root.body.type).toBe("dir");
      expect(root.body.commit).toMatch(/^[0-9a-f]{40}$/);
      expect(root.body.entries).toEqual([
        { name: "docs", type: "dir", size: null },
        { name: "src", type: "dir", size: null },
        { name: "logo.bin", type: "file", size: 5 },
        { name: "README.md", type: "file", size: 7 },
      ]);

      const docs = await t.api("GET", `/api/tasks/${task.id}/files?path=docs`);
      expect(docs.body).toMatchObject({ type: "dir", path: "docs", entries: [{ name: "guide.md", type: "file" }] });

      const guide = await t.api("GET", `/api/tasks/${task.id}/files?path=${encodeURIComponent("docs/guide.md")}`);
      expect(guide.body).toMatchObject({
        type: "file",
        path: "docs/guide.md",
        size: 6,
        binary: false,
        truncated: false,
        content: "guide\n",
      });

      const binary = await t.api("GET", `/api/tasks/${task.id}/files?path=logo.bin`);
      expect(binary.body).toMatchObject({ type: "file", binary: true, content: "" });

      const absent = await t.api<ErrorBody>("GET", `/api/tasks/${task.id}/files?path=nope.txt`);
      expect([absent.status, absent.body.error.code]).toEqual([404, "NOT_FOUND"]);

      for (const bad of ["../secret", "src/../../x", "a//b"]) {
        const refused = await t.api<ErrorBody>("GET", `/api/tasks/${task.id}/files?path=${encodeURIComponent(bad)}`);
        expect([refused.status, refused.body.error.code]).toEqual([400, "VALIDATION_ERROR"]);
      }
    } finally {
      recorder.close();
    }
  });

  it("answers 404 for the files of a task that does not exist", async () => {
    const reply = await t.api<ErrorBody>("GET", "/api/tasks/6a1f8a52-4a4e-4b43-9f11-6bb0b4bdb6f5/files");
    expect([reply.status, reply.body.error.code]).toEqual([404, "NOT_FOUND"]);
  });
});
