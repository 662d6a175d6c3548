/**
 * Secrets and environments through the real API (PGlite and Postgres): no
 * answer ever carries a secret's value, values are sealed at rest, and a
 * secret that reaches a process is redacted from everything the task shows —
 * stream chunks, stored messages, the setup log, the task, the server's logs.
 */
import { existsSync } from "node:fs";
import type { EnvironmentDto, ErrorBody, MessageDto, SecretDto, TaskDto } from "@repo/types";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { createRepo } from "../../../test/support/git";
import { readTask } from "../../../test/support/lifecycle";
import { EventRecorder, startTestServer, type TestServer } from "../../../test/support/server";

const targets = await databaseTargets();

const SETUP_TOKEN = "setup-secret-value-0001";
const AGENT_TOKEN = "agent-secret-value-0002";
const VALUES = [SETUP_TOKEN, AGENT_TOKEN];

type TaskBody = { task: TaskDto };

describe.each(targets)("secrets and environments on $name", (target) => {
  let database: TestDatabase;
  let t: TestServer;
  const logLines: string[] = [];
  const recorders: EventRecorder[] = [];

  beforeAll(async () => {
    database = await target.open();
    // Everything the server logs, at every level, lands here.
    const logger = pino({ level: "trace" }, { write: (line: string) => logLines.push(line) });
    t = await startTestServer({ database, logger });
  });
  afterEach(() => {
    for (const recorder of recorders.splice(0)) recorder.close();
  });
  afterAll(async () => {
    await t.close();
    await database.close();
  });

  function listen(): EventRecorder {
    const recorder = new EventRecorder(t.url);
    recorders.push(recorder);
    return recorder;
  }

  function expectNoSecretValue(text: string): void {
    for (const value of VALUES) expect(text).not.toContain(value);
  }

  it("stores a secret sealed and answers with names, scopes and times only", async () => {
    const put = await t.api<{ secret: SecretDto }>("PUT", "/api/secrets/SERVICE_KEY", {
      value: "sk-live-abcdef123456",
    });
    expect(put.status).toBe(200);
    expect(Object.keys(put.body.secret).sort()).toEqual(["createdAt", "name", "repoUrl", "updatedAt"]);
    expect([put.body.secret.name, put.body.secret.repoUrl]).toEqual(["SERVICE_KEY", null]);

    const scoped = await t.api<{ secret: SecretDto }>("PUT", "/api/secrets/SERVICE_KEY", {
      value: "sk-repo-only-7890",
      repoUrl: "/srv/repos/app/",
    });
    expect(scoped.body.secret.repoUrl).toBe("/srv/repos/app");

    const replaced = await t.api<{ secret: SecretDto }>("PUT", "/api/secrets/SERVICE_KEY", {
      value: "sk-live-rotated-42",
    });
    expect(replaced.body.secret.createdAt).toBe(put.body.secret.createdAt);

    const listed = await fetch(`${t.url}/api/secrets`).then((r) => r.text());
    for (const value of ["sk-live-abcdef123456", "sk-repo-only-7890", "sk-live-rotated-42"]) {
      expect(listed).not.toContain(value);
    }
    const { secrets } = JSON.parse(listed) as { secrets: SecretDto[] };
    expect(secrets.filter((s) => s.name === "SERVICE_KEY").map((s) => s.repoUrl)).toEqual([null, "/srv/repos/app"]);

    const rows = await t.server.database.db.query.secrets.findMany();
    const sealed = rows.filter((row) => row.name === "SERVICE_KEY").map((row) => row.valueSealed);
    expect(sealed).toHaveLength(2);
    for (const value of sealed) {
      expect(value).toMatch(/^v1\./);
      expect(value).not.toContain("sk-");
    }

    expect((await t.api("DELETE", "/api/secrets/SERVICE_KEY?repoUrl=%2Fsrv%2Frepos%2Fapp")).status).toBe(204);
    expect((await t.api("DELETE", "/api/secrets/SERVICE_KEY")).status).toBe(204);
    const gone = await t.api<ErrorBody>("DELETE", "/api/secrets/SERVICE_KEY");
    expect([gone.status, gone.body.error.code]).toEqual([404, "NOT_FOUND"]);
  });

  it.each([
    ["a name that is not an environment variable", "/api/secrets/1ST_KEY", { value: "long enough" }],
    ["a reserved name", "/api/secrets/LD_PRELOAD", { value: "long enough" }],
    ["a value too short to tell apart", "/api/secrets/SHORT", { value: "abc" }],
    ["an unknown field", "/api/secrets/KEY", { value: "long enough", scope: "all" }],
    ["a repoUrl that is not one", "/api/secrets/KEY", { value: "long enough", repoUrl: "not a repo" }],
    ["no body", "/api/secrets/KEY", undefined],
  ])("refuses %s with 400 and stores nothing", async (_case, path, body) => {
    const before = (await t.api<{ secrets: SecretDto[] }>("GET", "/api/secrets")).body.secrets.length;
    const answer = await t.api<ErrorBody>("PUT", path, body);
    expect([answer.status, answer.body.error.code]).toEqual([400, "VALIDATION_ERROR"]);
    expect((await t.api<{ secrets: SecretDto[] }>("GET", "/api/secrets")).body.secrets).toHaveLength(before);
  });

  it("replaces an environment whole, lists it, refuses bad fields and deletes it", async () => {
    const repoUrl = "/srv/repos/env-crud";
    const full = await t.api<{ environment: EnvironmentDto }>("PUT", "/api/environments", {
      repoUrl,
      setupScript: "npm ci",
      env: { NODE_ENV: "test" },
      network: "allowlist",
      allowedDomains: ["Registry.npmjs.org", "*.pypi.org", "127.0.0.1:4873"],
      agentSecrets: ["NPM_TOKEN"],
      cache: false,
    });
    expect(full.status).toBe(200);
    expect(full.body.environment).toMatchObject({
      repoUrl,
      setupScript: "npm ci",
      env: { NODE_ENV: "test" },
      network: "allowlist",
      allowedDomains: ["registry.npmjs.org", "*.pypi.org", "127.0.0.1:4873"],
      agentSecrets: ["NPM_TOKEN"],
      cache: false,
    });
    const bare = await t.api<{ environment: EnvironmentDto }>("PUT", "/api/environments", { repoUrl: `${repoUrl}/` });
    expect(bare.body.environment).toMatchObject({
      repoUrl,
      setupScript: null,
      env: {},
      network: null,
      allowedDomains: null,
      agentSecrets: [],
      cache: true,
    });
    const { environments } = (await t.api<{ environments: EnvironmentDto[] }>("GET", "/api/environments")).body;
    expect(environments.filter((e) => e.repoUrl === repoUrl)).toHaveLength(1);

    for (const bad of [
      { repoUrl, env: { "BAD-NAME": "x" } },
      { repoUrl, env: { PATH: "/evil" } },
      { repoUrl, network: "sometimes" },
      { repoUrl, allowedDomains: ["https://example.com/"] },
      { repoUrl, agentSecrets: ["not a name"] },
      { setupScript: "true" },
    ]) {
      const answer = await t.api<ErrorBody>("PUT", "/api/environments", bad);
      expect([answer.status, answer.body.error.code]).toEqual([400, "VALIDATION_ERROR"]);
    }
    expect((await t.api("DELETE", `/api/environments?repoUrl=${encodeURIComponent(repoUrl)}`)).status).toBe(204);
    expect((await t.api("DELETE", `/api/environments?repoUrl=${encodeURIComponent(repoUrl)}`)).status).toBe(404);
    expect((await t.api("DELETE", "/api/environments")).status).toBe(400);
  });

  it("gives setup every secret and the agent only the ones marked for it, redacted from every output and log", async () => {
    const repo = createRepo({ "README.md": "# Secrets\n", ".gitignore": "deps/\n" });
    await t.api("PUT", "/api/secrets/SETUP_TOKEN", { value: SETUP_TOKEN });
    await t.api("PUT", "/api/secrets/AGENT_TOKEN", { value: AGENT_TOKEN, repoUrl: repo });
    await t.api("PUT", "/api/environments", {
      repoUrl: repo,
      setupScript:
        'echo "setup sees $SETUP_TOKEN and $AGENT_TOKEN"\nmkdir -p deps\necho "$SETUP_TOKEN" > deps/token.txt',
      agentSecrets: ["AGENT_TOKEN"],
    });
    const recorder = listen();
    const created = await t.api<TaskBody>("POST", "/api/tasks", {
      repoUrl: repo,
      message:
        'seen=none; [ -z "$SETUP_TOKEN" ] || seen=$SETUP_TOKEN; echo "agent sees [$AGENT_TOKEN] [$seen]"; cat deps/token.txt',
    });
    const taskId = created.body.task.id;
    await recorder.join(taskId);
    await recorder.waitForStatus("COMPLETED");

    const setupLog = recorder.events
      .flatMap((e) => (e.name === "init-progress" && e.payload.type === "step-log" ? [e.payload.log ?? ""] : []))
      .join("");
    expect(setupLog).toContain("setup sees [secret:SETUP_TOKEN] and [secret:AGENT_TOKEN]\n");
    // What setup wrote the secret into is not cached: the cache would hold it in the clear.
    expect(setupLog).toContain("Umbra: not cached: deps/token.txt holds the value of a secret.\n");
    expect(t.server.environmentCache?.entries).toBe(0);
    const { messages } = (await t.api<{ messages: MessageDto[] }>("GET", `/api/tasks/${taskId}/messages`)).body;
    expect(messages.map((m) => m.content)).toContain(
      "agent sees [[secret:AGENT_TOKEN]] [none]\n[secret:SETUP_TOKEN]\n",
    );
    const streamed = recorder.events
      .flatMap((e) => (e.name === "stream-chunk" && e.payload.type === "stdout" ? [e.payload.text] : []))
      .join("");
    expect(streamed).toBe("agent sees [[secret:AGENT_TOKEN]] [none]\n[secret:SETUP_TOKEN]\n");

    const fullOutput = (await t.api<string>("GET", `/api/tasks/${taskId}/log`)).body;
    expect(fullOutput).toContain("agent sees [[secret:AGENT_TOKEN]] [none]\n[secret:SETUP_TOKEN]\n");
    expectNoSecretValue(fullOutput);

    expectNoSecretValue(JSON.stringify(recorder.events));
    expectNoSecretValue(JSON.stringify(messages));
    expectNoSecretValue(JSON.stringify((await t.api("GET", `/api/tasks/${taskId}`)).body));
    expectNoSecretValue(JSON.stringify((await t.api("GET", "/api/environments")).body));
    expectNoSecretValue(JSON.stringify((await t.api("GET", "/api/secrets")).body));
    expect(logLines.length).toBeGreaterThan(0);
    expectNoSecretValue(logLines.join(""));
  });

  it("ends a failing setup FAILED, naming INSTALL_DEPENDENCIES with the end of its log, redacted", async () => {
    const repo = createRepo({ "README.md": "# Failing setup\n" });
    await t.api("PUT", "/api/secrets/SETUP_TOKEN", { value: SETUP_TOKEN });
    await t.api("PUT", "/api/environments", {
      repoUrl: repo,
      setupScript: 'echo "installing with $SETUP_TOKEN"\necho "line two"\nfalse\necho "never printed"',
    });
    const recorder = listen();
    const created = await t.api<TaskBody>("POST", "/api/tasks", { repoUrl: repo, message: "echo never runs" });
    const taskId = created.body.task.id;
    await recorder.join(taskId);
    await recorder.waitForStatus("FAILED");

    const task = (await t.api<TaskBody>("GET", `/api/tasks/${taskId}`)).body.task;
    expect([task.status, task.initStatus]).toEqual(["FAILED", "INACTIVE"]);
    expect(task.initializationError).toBe(
      "Installing dependencies (INSTALL_DEPENDENCIES) failed: the environment's setup script exited with code 1; " +
        "the end of its log:\nUmbra: running the environment's setup script.\ninstalling with [secret:SETUP_TOKEN]\nline two",
    );
    const failure = await recorder.waitFor((e) => e.name === "init-progress" && e.payload.type === "init-error");
    expect(failure.name === "init-progress" && failure.payload.currentStep).toBe("INSTALL_DEPENDENCIES");
    // The half-made workspace is gone; nothing of the agent ran.
    expect(existsSync((await readTask(t, taskId)).workspacePath ?? "/nonexistent")).toBe(false);
    const { messages } = (await t.api<{ messages: MessageDto[] }>("GET", `/api/tasks/${taskId}/messages`)).body;
    expect(messages.map((m) => m.role)).toEqual(["user"]);
    expectNoSecretValue(JSON.stringify(recorder.events));
    expectNoSecretValue(logLines.join(""));
  });
});
