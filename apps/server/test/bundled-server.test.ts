/**
 * What `npm start` runs: the server bundled by scripts/build-server.mjs into
 * apps/server/dist/main.mjs, under plain `node` (no TypeScript loader). The
 * rest of the suite runs the sources; this proves the bundle finds what the
 * sources find relative to themselves (the embedded database's migrations and
 * its initdb script, run in a child process) and runs a task end to end.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, expect, it } from "vitest";
import { DataDirs, waitForTaskStatus } from "../../../test/support/faults";
import { createRepo } from "../../../test/support/git";
import { killAllServers, settleProcessesUnder, spawnServer } from "../../../test/support/server-process";

const REPO_ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const dataDirs = new DataDirs();
afterAll(async () => {
  await killAllServers();
  dataDirs.cleanUp();
});

it("the bundled server creates its embedded database on a fresh data directory and runs a task", async () => {
  execFileSync(process.execPath, ["scripts/build-server.mjs"], { cwd: REPO_ROOT, stdio: "pipe" });
  const dataDir = dataDirs.create("umbra-bundled-");
  const server = await spawnServer({ dataDir, bundled: true, healthyTimeoutMs: 180_000 });
  expect(server.child.spawnargs.some((arg) => arg.endsWith("apps/server/dist/main.mjs"))).toBe(true);

  const created = await server.api<{ task: { id: string } }>("POST", "/api/tasks", {
    repoUrl: createRepo(),
    message: "echo bundled > out.txt && cat out.txt",
  });
  expect(created.status).toBe(201);
  const taskId = created.body.task.id;
  await waitForTaskStatus(server, taskId, "COMPLETED", 120_000);
  const { messages } = (await server.api<{ messages: { content: string }[] }>("GET", `/api/tasks/${taskId}/messages`))
    .body;
  expect(messages.map((m) => m.content)).toContain("bundled\n");

  expect(await server.stop()).toBe(0);
  expect(await settleProcessesUnder(dataDir)).toEqual([]);
}, 300_000);
