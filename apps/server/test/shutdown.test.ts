import { openDatabase, tasks } from "@repo/db";
import type { TaskDto } from "@repo/types";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createRepo } from "../../../test/support/git";
import { serveGatedRepo } from "../../../test/support/git-http";
import { eventually } from "../../../test/support/lifecycle";
import { startTestServer } from "../../../test/support/server";
import { processesUnder } from "../../../test/support/server-process";

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

/** A server of `mode` with a new task whose initialization waits mid-fetch at a repository remote that never answers. */
async function initializationStalledAtFetch(mode: string) {
  const gate = await serveGatedRepo(createRepo({ "README.md": "# gated\n" }));
  const database = await openDatabase();
  // The stalled remote is an HTTP server on 127.0.0.1: a loopback repository host, allowed here on purpose.
  const t = await startTestServer({ database, env: { AGENT_MODE: mode, ALLOWED_REPO_HOSTS: "127.0.0.1" } });
  const { task } = (
    await t.api<{ task: TaskDto }>("POST", "/api/tasks", { repoUrl: gate.url, message: "echo one > one.txt" })
  ).body;
  await gate.firstRequest;
  return { gate, database, t, task };
}

describe.each(["local", "remote"])("a %s server whose repository remote stalls mid-fetch", (mode) => {
  it("a user's stop of the initialization ends the fetch and answers STOPPED at once", async () => {
    const { gate, database, t, task } = await initializationStalledAtFetch(mode);
    try {
      const started = Date.now();
      const reply = await t.api<{ task: TaskDto }>("POST", `/api/tasks/${task.id}/stop`);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(reply.status).toBe(200);
      expect([reply.body.task.status, reply.body.task.initStatus]).toEqual(["STOPPED", "INACTIVE"]);
      expect(processesUnder(t.dataDir)).toEqual([]);
    } finally {
      await t.close();
      await gate.close();
      await database.close();
    }
  }, 60_000);

  it("a graceful shutdown does not wait for the stalled fetch: the initialization is left for another server", async () => {
    const { gate, database, t, task } = await initializationStalledAtFetch(mode);
    try {
      const started = Date.now();
      await t.server.close("server received SIGTERM");
      expect(Date.now() - started).toBeLessThan(5000);
      const [row] = await database.db.select().from(tasks).where(eq(tasks.id, task.id));
      expect([row?.status, row?.initStatus, row?.ownerId]).toEqual(["INITIALIZING", "INACTIVE", null]);
      expect(processesUnder(t.dataDir)).toEqual([]);
    } finally {
      await gate.close();
      await database.close();
    }
  }, 60_000);
});
