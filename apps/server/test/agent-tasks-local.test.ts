/**
 * Claude Code and Codex as a task's agent in local mode, through the real
 * API: the real CLIs against fake model vendors on 127.0.0.1 (see
 * test/support/agent-task-flow.ts for what is checked), on the embedded
 * database; the remote-mode file runs the same flow on Postgres when there
 * is one.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installedCli, warnLeftOut } from "../../../test/support/agent-cli-fixture";
import { agentTaskFlow, CLAUDE_CODE, type CliCase, CODEX } from "../../../test/support/agent-task-flow";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { createRepo } from "../../../test/support/git";
import { startTestServer, type TestServer } from "../../../test/support/server";

const REQUIRE_ALL = process.env.UMBRA_TEST_REQUIRE_ALL === "1";
const [pglite] = await databaseTargets();
const cases: Array<CliCase & { installed: string | null }> = [CLAUDE_CODE, CODEX].map((c) => {
  const { binary, reason } = installedCli(c.cli);
  if (!binary) warnLeftOut(c.cli, reason);
  return { ...c, installed: binary };
});

describe.each(cases)("$cli as a task's agent in local mode", (c) => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await pglite!.open();
  });
  afterAll(() => database.close());

  it.runIf(REQUIRE_ALL)("is installed when every test must run", () => {
    expect(c.installed).not.toBeNull();
  });

  it.skipIf(!c.installed)(
    "writes into the diff with its own tools, shows them as tool calls, keeps the key out of everything, resumes warm and after an archive, and counts its usage",
    () => agentTaskFlow(c, { mode: "local", database }),
    300_000,
  );
});

describe("an agent without its key", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(() => t.close());

  it.each(cases)("refuses a $cli task at creation with 400 and the reason", async (c) => {
    const refused = await t.api<{ error: { code: string; message: string } }>("POST", "/api/tasks", {
      repoUrl: createRepo(),
      message: "hello",
      agent: c.cli,
    });
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe("VALIDATION_ERROR");
    expect(refused.body.error.message).toContain(`no API key is configured (set ${c.keyVariable})`);
    expect((await t.api<{ tasks: unknown[] }>("GET", "/api/tasks")).body.tasks).toEqual([]);
  });
});
