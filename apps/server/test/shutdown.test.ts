import { openDatabase, tasks } from "@repo/db";
import type { TaskDto } from "@repo/types";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createRepo } from "../../../test/support/git";
import { eventually } from "../../../test/support/lifecycle";
import { startTestServer } from "../../../test/support/server";

describe("graceful shutdown", () => {
  it("ends a running turn STOPPED with the reason, keeps its work, and stops accepting requests", async () => {
    const database = await openDatabase();
    const t = await startTestServer({ database });
    const { task } = (
      await t.api<{ task: TaskDto }>("POST", "/api/tasks", {
        repoUrl: createRepo(),
        message: "echo partial > partial.txt; sleep 30",
      })
    ).body;
    await eventually(
      async () => (await t.api<{ task: TaskDto }>("GET", `/api/tasks/${task.id}`)).body.task.status === "RUNNING",
    );
    await eventually(async () => {
      const executor = await t.server.workspaces.executor(
        (await database.db.select().from(tasks).where(eq(tasks.id, task.id)))[0]!,
      );
      return (await executor.listDir(".")).some((e) => e.name === "partial.txt");
    });

    const started = Date.now();
    await t.server.close("server received SIGTERM");
    expect(Date.now() - started).toBeLessThan(5000);
    const [row] = await database.db.select().from(tasks).where(eq(tasks.id, task.id));
    expect([row?.status, row?.initStatus, row?.errorMessage]).toEqual(["STOPPED", "ACTIVE", "server received SIGTERM"]);
    await expect(fetch(`${t.url}/api/health`)).rejects.toThrow();

    // The work written before the shutdown is on the task branch.
    const again = await startTestServer({ database, dataDir: t.dataDir });
    const diff = (await again.api<{ files: { path: string }[] }>("GET", `/api/tasks/${task.id}/diff`)).body;
    expect(diff.files.map((f) => f.path)).toEqual(["partial.txt"]);
    await again.close();
    await database.close();
  });
});
