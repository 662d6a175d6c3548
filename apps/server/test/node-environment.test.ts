/**
 * A Node project whose environment's setup is `npm ci`, in local mode and in
 * remote mode (the setup runs inside the sandbox): the real npm installs the
 * project's one dependency from a registry on 127.0.0.1, a turn then runs the
 * project's tests with `npm test`, and after the workspace is gone a
 * re-initialization gets node_modules back from the cache — the registry is
 * not asked again and the tests still pass. In remote mode the registry is
 * reachable from the sandbox only because the environment's allowedDomains
 * names it (the server's default allowlist does not).
 */
import { join } from "node:path";
import { openDatabase } from "@repo/db";
import type { TaskDto } from "@repo/types";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRepo, tempDir } from "../../../test/support/git";
import { type Gate, holdFirstStep } from "../../../test/support/lifecycle";
import { type NpmRegistry, startNpmRegistry } from "../../../test/support/npm-registry";
import { recordRun } from "../../../test/support/recorded-run";
import { startTestServer, type TestServer } from "../../../test/support/server";
import { loadConfig } from "../src/config";
import { createWorkspaceManager } from "../src/execution";
import { AgentStateDirs } from "../src/execution/agent-state";
import { createLogger } from "../src/logger";
import { RepositoryStore } from "../src/repository/repository-store";
import { systemClock } from "../src/utils/clock";
import { SecretBox } from "../src/utils/secret-box";

const DEPENDENCY = {
  name: "umbra-fixture-add",
  version: "1.0.0",
  files: {
    "package.json": JSON.stringify({ name: "umbra-fixture-add", version: "1.0.0", main: "index.js" }),
    "index.js": "module.exports = (a, b) => a + b;\n",
  },
};

/** The project: one dependency, a lockfile pinning it to the registry's tarball, and a test that uses it. */
function nodeProject(registry: NpmRegistry): string {
  const [dep] = registry.packages;
  const manifest = {
    name: "fixture-app",
    version: "1.0.0",
    private: true,
    scripts: { test: "node test.js" },
    dependencies: { [dep!.name]: dep!.version },
  };
  const lock = {
    name: "fixture-app",
    version: "1.0.0",
    lockfileVersion: 3,
    requires: true,
    packages: {
      "": { name: "fixture-app", version: "1.0.0", dependencies: { [dep!.name]: dep!.version } },
      [`node_modules/${dep!.name}`]: { version: dep!.version, resolved: dep!.tarballUrl, integrity: dep!.integrity },
    },
  };
  return createRepo({
    ".gitignore": "node_modules/\n",
    "package.json": `${JSON.stringify(manifest, null, 2)}\n`,
    "package-lock.json": `${JSON.stringify(lock, null, 2)}\n`,
    "test.js": [
      `const add = require("${dep!.name}");`,
      'if (add(2, 3) !== 5) { console.error("add is broken"); process.exit(1); }',
      'console.log("tests passed: add(2, 3) = 5");',
      "",
    ].join("\n"),
  });
}

describe.each(["local", "remote"] as const)("a Node project set up with npm ci in %s mode", (mode) => {
  let t: TestServer;
  let arm: () => Gate;
  let registry: NpmRegistry;

  beforeAll(async () => {
    registry = await startNpmRegistry([DEPENDENCY]);
    const dataDir = tempDir("umbra-data-");
    const env = { AGENT_MODE: mode, DATA_DIR: dataDir, AGENT: "shell", VM_READY_TIMEOUT_MS: "30000" };
    const database = await openDatabase();
    const real = await createWorkspaceManager(loadConfig(env), {
      db: database.db,
      clock: systemClock,
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
    await registry.close();
  });

  it("installs the dependency in setup, runs the tests in a turn, and restores node_modules on re-initialization", {
    timeout: 180_000,
  }, async () => {
    const repo = nodeProject(registry);
    await t.api("PUT", "/api/environments", {
      repoUrl: repo,
      setupScript: "npm ci --no-audit --no-fund",
      env: { npm_config_registry: registry.url, npm_config_update_notifier: "false" },
      allowedDomains: [new URL(registry.url).host],
    });
    const run = (start: () => Promise<TaskDto>) => recordRun(t, arm, start);

    const first = await run(() =>
      t.api<{ task: TaskDto }>("POST", "/api/tasks", { repoUrl: repo, message: "npm test" }).then((r) => r.body.task),
    );
    expect(first.setupLog).toMatch(/added 1 package/);
    expect(first.setupLog).toMatch(/Umbra: cached the environment \(\d+ kB: node_modules\/\)\.\n/);
    expect(first.output).toContain("tests passed: add(2, 3) = 5\n");
    const tarballFetches = () => registry.requests.filter((path) => path.endsWith(".tgz")).length;
    expect(tarballFetches()).toBe(1);

    await t.api("POST", `/api/tasks/${first.task.id}/archive`);
    const again = await run(() =>
      t
        .api<{ task: TaskDto }>("POST", `/api/tasks/${first.task.id}/messages`, { message: "npm test" })
        .then((r) => r.body.task),
    );
    expect(again.setupLog).toMatch(/^Umbra: restored the environment from the cache \(\d+ kB: node_modules\/\)/);
    expect(again.setupLog).not.toMatch(/added 1 package/);
    expect(again.output).toContain("tests passed: add(2, 3) = 5\n");
    expect(tarballFetches()).toBe(1);
  });
});
