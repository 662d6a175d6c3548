import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UNCONFIGURED_AGENTS } from "../../../test/support/agents";
import { createRepo } from "../../../test/support/git";
import { startTestServer, type TestServer } from "../../../test/support/server";

type ErrorBody = { error: { code: string; message: string } };

describe("bad input answers with the error shape and changes nothing", () => {
  let t: TestServer;
  beforeAll(async () => {
    // CLIs named where there are none, so what the config lists does not depend on this machine.
    // DELIVERY=none: a background push would change the tasks between the snapshots this file compares.
    t = await startTestServer({
      env: { CLAUDE_CODE_BIN: "/nonexistent/claude", CODEX_BIN: "/nonexistent/codex", DELIVERY: "none" },
    });
  });
  afterAll(() => t.close());

  async function taskCount() {
    return ((await t.api<{ tasks: unknown[] }>("GET", "/api/tasks")).body.tasks ?? []).length;
  }

  it.each([
    ["missing fields", {}],
    ["no message", { repoUrl: "/tmp/x" }],
    ["wrong types", { repoUrl: 42, message: ["x"] }],
    ["relative path", { repoUrl: "repo", message: "x" }],
    ["empty message", { repoUrl: "/tmp/x", message: "   " }],
    ["unknown field", { repoUrl: "/tmp/x", message: "x", extra: true }],
    ["bad branch", { repoUrl: "/tmp/x", message: "x", baseBranch: "a..b" }],
    ["array body", [1, 2]],
    ["null body", null],
  ])("POST /api/tasks with %s → 400 VALIDATION_ERROR", async (_name, body) => {
    const before = await taskCount();
    const response = await t.api<ErrorBody>("POST", "/api/tasks", body);
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe("VALIDATION_ERROR");
    expect(response.body.error.message.length).toBeGreaterThan(0);
    expect(await taskCount()).toBe(before);
  });

  it("answers invalid JSON with 400 VALIDATION_ERROR", async () => {
    const response = await t.api<ErrorBody>("POST", "/api/tasks", '{"repoUrl": ', {
      "content-type": "application/json",
    });
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe("VALIDATION_ERROR");
  });

  it("answers a non-JSON content type with 400 VALIDATION_ERROR", async () => {
    const response = await t.api<ErrorBody>("POST", "/api/tasks", "repoUrl=x", { "content-type": "text/plain" });
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe("VALIDATION_ERROR");
  });

  it.each([
    ["GET", "/api/tasks/%s"],
    ["GET", "/api/tasks/%s/messages"],
    ["GET", "/api/tasks/%s/diff"],
    ["POST", "/api/tasks/%s/stop"],
    ["POST", "/api/tasks/%s/archive"],
    ["DELETE", "/api/tasks/%s"],
  ])("%s %s with an unknown or malformed id → 404 NOT_FOUND", async (method, path) => {
    for (const id of [randomUUID(), "not-a-uuid", "../etc"]) {
      const response = await t.api<ErrorBody>(method, path.replace("%s", encodeURIComponent(id)));
      expect(response.status).toBe(404);
      expect(response.body.error.code).toBe("NOT_FOUND");
    }
  });

  it("refuses a follow-up to an unknown task, and a bad follow-up body to a real one", async () => {
    expect((await t.api<ErrorBody>("POST", `/api/tasks/${randomUUID()}/messages`, { message: "x" })).status).toBe(404);
    const { task } = (
      await t.api<{ task: { id: string } }>("POST", "/api/tasks", { repoUrl: createRepo(), message: "true" })
    ).body;
    const bad = await t.api<ErrorBody>("POST", `/api/tasks/${task.id}/messages`, { msg: "x" });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("VALIDATION_ERROR");
  });

  it("answers unknown API routes with 404 in the error shape", async () => {
    const response = await t.api<ErrorBody>("GET", "/api/nothing-here");
    expect(response.status).toBe(404);
    expect(response.body.error.code).toBe("NOT_FOUND");
  });

  it("serves health, config and metrics", async () => {
    expect((await t.api("GET", "/api/health")).body).toEqual({ ok: true });
    expect((await t.api("GET", "/api/config")).body).toEqual({
      mode: "local",
      steps: ["PREPARE_WORKSPACE", "INSTALL_DEPENDENCIES", "INDEX_REPOSITORY"],
      cleanupDelayMs: 600_000,
      delivery: { mode: "none", forges: [] },
      agent: "shell",
      agents: UNCONFIGURED_AGENTS,
      capacity: { active: expect.any(Number), max: null },
    });
    const metrics = await fetch(`${t.url}/metrics`);
    expect(metrics.headers.get("content-type")).toContain("text/plain");
    expect(await metrics.text()).toContain("# TYPE umbra_tasks gauge");
  });
});

describe("API_TOKEN", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ env: { API_TOKEN: "right-token", DELIVERY: "none" } });
  });
  afterAll(() => t.close());

  it.each([
    ["GET", "/api/health"],
    ["GET", "/api/config"],
    ["GET", "/api/tasks"],
    ["POST", "/api/tasks"],
    ["GET", `/api/tasks/${randomUUID()}`],
    ["GET", "/metrics"],
  ])("%s %s refuses a missing or wrong token with 401", async (method, path) => {
    const attempts: Record<string, string>[] = [
      {},
      { authorization: "Bearer wrong" },
      { authorization: "right-token" },
    ];
    for (const headers of attempts) {
      const response = await t.api<ErrorBody>(method, path, undefined, headers);
      expect(response.status).toBe(401);
      expect(response.body.error.code).toBe("UNAUTHORIZED");
    }
    const ok = await t.api(method, path, method === "POST" ? {} : undefined, { authorization: "Bearer right-token" });
    expect(ok.status).not.toBe(401);
  });
});
