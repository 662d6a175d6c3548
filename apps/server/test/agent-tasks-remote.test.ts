/**
 * Claude Code and Codex as a task's agent in remote mode (`process`
 * provider, under bubblewrap when it is installed), through the real API:
 * the CLI runs inside the sandbox from its host installation bound
 * read-only, with the task's state directory bound read-write as its HOME;
 * the warm window ends on a manual clock, and the follow-up after the
 * cleanup resumes the session in a new sandbox. The checks are those of
 * test/support/agent-task-flow.ts; Postgres when there is one.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installedCli, warnLeftOut } from "../../../test/support/agent-cli-fixture";
import { agentTaskFlow, CLAUDE_CODE, type CliCase, CODEX } from "../../../test/support/agent-task-flow";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { ManualClock } from "../src/utils/clock";

const REQUIRE_ALL = process.env.UMBRA_TEST_REQUIRE_ALL === "1";
const targets = await databaseTargets();
const target = targets.at(-1)!;
const cases: Array<CliCase & { installed: string | null }> = [CLAUDE_CODE, CODEX].map((c) => {
  const { binary, reason } = installedCli(c.cli);
  if (!binary) warnLeftOut(c.cli, reason);
  return { ...c, installed: binary };
});

describe.each(cases)(`$cli as a task's agent in remote mode, on ${target.name}`, (c) => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await target.open();
  });
  afterAll(() => database.close());

  it.runIf(REQUIRE_ALL)("is installed when every test must run", () => {
    expect(c.installed).not.toBeNull();
  });

  it.skipIf(!c.installed)(
    "runs in the sandbox, writes into the diff, keeps the key out of everything, resumes warm and after the cleanup, and counts its usage",
    () => agentTaskFlow(c, { mode: "remote", database, clock: new ManualClock() }),
    300_000,
  );
});
