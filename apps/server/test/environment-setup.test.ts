/**
 * INSTALL_DEPENDENCIES end to end, in local mode and in remote mode (the
 * `process` provider: the setup runs inside the sandbox): the repository's
 * own `.umbra/setup.sh` runs, what it produced is cached, and a
 * re-initialization or a new task on the same repository gets it back from
 * the cache without running the setup. The setup writes a random stamp, so a
 * stamp that comes back unchanged proves the setup did not run again.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { openDatabase } from "@repo/db";
import type { MessageDto, TaskDto } from "@repo/types";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRepo, git, tempDir } from "../../../test/support/git";
import { type Gate, holdFirstStep } from "../../../test/support/lifecycle";
import { recordRun } from "../../../test/support/recorded-run";
import { startTestServer, type TestServer } from "../../../test/support/server";
import { loadConfig } from "../src/config";
import { createWorkspaceManager } from "../src/execution";
import { AgentStateDirs } from "../src/execution/agent-state";
import { createLogger } from "../src/logger";
import { RepositoryStore } from "../src/repository/repository-store";
import { SecretBox } from "../src/utils/secret-box";

type Mode = "local" | "remote";

const STAMP_SETUP = ['echo "setup ran"', "mkdir -p deps", "od -An -N8 -tx8 /dev/urandom | tr -d ' ' > deps/stamp"].join(
  "\n",
);

describe.each(["local", "remote"] as Mode[])("environment setup and its cache in %s mode", (mode) => {
  let t: TestServer;
  let arm: () => Gate;

  beforeAll(async () => {
    const dataDir = tempDir("umbra-data-");
    const env = { AGENT_MODE: mode, DATA_DIR: dataDir, AGENT: "shell", VM_READY_TIMEOUT_MS: "30000" };
    const database = await openDatabase();
    const real = await createWorkspaceManager(loadConfig(env), {
      db: database.db,
      clock: { now: () => new Date(), setTimer: () => ({ cancel() {} }) },
      store: new RepositoryStore(join(dataDir, "repos")),
      secrets: await SecretBox.load({ dataDir }),
      agentState: new AgentStateDirs(join(dataDir, "agent-state")),
      log: createLogger("silent"),
    });
    const held = holdFirstStep(real);
    arm = held.arm;
    t = await startTestServer({ env, dataDir, database, workspaces: held.manager });
  });
  afterAll(async () => {
    await t.close();
    await t.server.database.close();
  });

  const run = (start: () => Promise<TaskDto>) => recordRun(t, arm, start);
  const create = (repoUrl: string, message: string) => () =>
    t.api<{ task: TaskDto }>("POST", "/api/tasks", { repoUrl, message }).then((r) => r.body.task);
  const followUp = (taskId: string, message: string) => () =>
    t.api<{ task: TaskDto }>("POST", `/api/tasks/${taskId}/messages`, { message }).then((r) => r.body.task);
  const archive = (taskId: string) => t.api("POST", `/api/tasks/${taskId}/archive`);

  async function metric(name: string): Promise<number> {
    const text = await fetch(`${t.url}/metrics`).then((r) => r.text());
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(" ")[1]) : Number.NaN;
  }

  function stampRepo(setup = STAMP_SETUP): string {
    return createRepo({
      "README.md": "# Setup\n",
      ".gitignore": "deps/\n",
      "requirements.txt": "left-pad==1.0\n",
      ".umbra/setup.sh": `${setup}\n`,
    });
  }

  it("re-initializes from the cache without running the setup again", { timeout: 120_000 }, async () => {
    const repo = stampRepo();
    const [hits, setups] = [
      await metric("umbra_environment_cache_hits_total"),
      await metric("umbra_environment_setups_succeeded_total"),
    ];
    const first = await run(create(repo, "cat deps/stamp"));
    expect(first.setupLog).toContain("Umbra: running .umbra/setup.sh.\nsetup ran\n");
    expect(first.setupLog).toMatch(/Umbra: cached the environment \(\d+ kB: deps\/\)\.\n/);
    expect(first.output).toMatch(/^[0-9a-f]{16}\n$/);

    // Locally a copy is unpacked in the background after each store and restore, and the next restore moves it in.
    const restoredAs = mode === "local" ? "moved into place, unpacked ahead of time" : "unpacked";
    for (const round of [1, 2]) {
      await t.server.environmentCache?.idle();
      await archive(first.task.id);
      const again = await run(followUp(first.task.id, "cat deps/stamp"));
      expect(again.output).toBe(first.output);
      expect(again.setupLog).toMatch(
        new RegExp(
          `^Umbra: restored the environment from the cache \\(\\d+ kB: deps/\\) in \\d+ ms \\(${restoredAs}\\); setup not run`,
        ),
      );
      expect(again.setupLog).not.toContain("setup ran");
      expect(await metric("umbra_environment_cache_hits_total")).toBe(hits + round);
    }
    expect(await metric("umbra_environment_setups_succeeded_total")).toBe(setups + 1);
  });

  it("gives a new task on the same repository the cached environment, until a lockfile changes", {
    timeout: 120_000,
  }, async () => {
    const repo = stampRepo();
    const first = await run(create(repo, "cat deps/stamp"));
    const second = await run(create(repo, "cat deps/stamp"));
    expect(second.output).toBe(first.output);
    expect(second.setupLog).not.toContain("setup ran");

    writeFileSync(join(repo, "requirements.txt"), "left-pad==1.1\n");
    git(repo, "commit", "-qam", "bump left-pad");
    const third = await run(create(repo, "cat deps/stamp"));
    expect(third.setupLog).toContain("setup ran");
    expect(third.output).not.toBe(first.output);
  });

  it("reuses an environment that names its workspace's path only in that workspace", { timeout: 120_000 }, async () => {
    const repo = stampRepo(`${STAMP_SETUP}\npwd -P > deps/where`);
    const first = await run(create(repo, "cat deps/stamp"));
    expect(first.setupLog).toContain("Umbra: cached the environment");
    expect(first.setupLog).toContain("deps/where names this workspace's path, so only this workspace can reuse it.");

    const other = await run(create(repo, "cat deps/stamp"));
    expect(other.setupLog).toContain("setup ran");

    await archive(first.task.id);
    const again = await run(followUp(first.task.id, "cat deps/stamp"));
    expect(again.setupLog).not.toContain("setup ran");
    expect(again.output).toBe(first.output);
  });

  it("runs a setup that changes tracked files every time, and says why it is not cached", {
    timeout: 120_000,
  }, async () => {
    const repo = stampRepo(`${STAMP_SETUP}\necho generated >> README.md`);
    const first = await run(create(repo, "cat deps/stamp"));
    expect(first.setupLog).toContain(
      "Umbra: not cached: setup changed files git tracks or left files it does not ignore (README.md).\n",
    );
    const second = await run(create(repo, "cat deps/stamp"));
    expect(second.setupLog).toContain("setup ran");
    const { messages } = (await t.api<{ messages: MessageDto[] }>("GET", `/api/tasks/${second.task.id}/messages`)).body;
    expect(messages.map((m) => m.role)).toEqual(["user", "tool"]);
  });
});
