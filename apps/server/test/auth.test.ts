/**
 * Authentication and secrets:
 * - with API_TOKEN set, every route of SPEC §5 (on real task ids too) and the
 *   socket handshake refuse a missing or wrong token — however the path is
 *   spelled — and accept the right one;
 * - a server that would listen beyond loopback without API_TOKEN refuses to
 *   start;
 * - the per-VM sidecar token never reaches the server's logs, and the
 *   server's own secrets (model API keys, API_TOKEN) never reach a sandbox.
 */
import { randomBytes } from "node:crypto";
import type { TaskDto } from "@repo/types";
import { SidecarClient } from "@repo/workspace";
import fc from "fast-check";
import { io as connect } from "socket.io-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataDirs, describeProcessesUnder, destroySandboxes } from "../../../test/support/faults";
import { createRepo } from "../../../test/support/git";
import { eventually } from "../../../test/support/lifecycle";
import { reliabilityCase } from "../../../test/support/reliability";
import { processEnvironment, readSandboxRecord, sidecarPid } from "../../../test/support/sandbox-probe";
import { startTestServer, type TestServer } from "../../../test/support/server";
import { settleProcessesUnder, spawnServer } from "../../../test/support/server-process";

const FILE = "auth.test.ts";
const TOKEN = `right-${randomBytes(12).toString("hex")}`;
type ErrorBody = { error: { code: string; message: string } };
type TaskBody = { task: TaskDto };

function expectUnauthorized(response: { status: number; body: unknown }, what: string): void {
  expect(response.status, what).toBe(401);
  expect(response.body, what).toEqual({ error: { code: "UNAUTHORIZED", message: expect.any(String) } });
}

const dataDirs = new DataDirs();
afterAll(() => dataDirs.cleanUp());

describe("API_TOKEN on every route", () => {
  let t: TestServer;
  const bearer = { authorization: `Bearer ${TOKEN}` };
  let task: TaskDto;
  let doomed: TaskDto;

  beforeAll(async () => {
    // DELIVERY=none: a background push would change the tasks between the snapshots this test compares.
    t = await startTestServer({ env: { API_TOKEN: TOKEN, DELIVERY: "none" } });
    const create = (message: string) =>
      t.api<TaskBody>("POST", "/api/tasks", { repoUrl: createRepo(), message }, bearer).then((r) => r.body.task);
    [task, doomed] = await Promise.all([create("echo one > one.txt"), create("true")]);
    for (const id of [task.id, doomed.id]) {
      await eventually(async () => {
        const { body } = await t.api<TaskBody>("GET", `/api/tasks/${id}`, undefined, bearer);
        return body.task.status === "COMPLETED";
      });
    }
  });
  afterAll(() => t.close());

  /** Every route of SPEC §5, on real task ids, with a body that would be accepted. */
  const routes = (): [string, string, unknown][] => [
    ["GET", "/api/health", undefined],
    ["GET", "/api/config", undefined],
    ["GET", "/api/tasks", undefined],
    ["POST", "/api/tasks", { repoUrl: createRepo(), message: "echo no > no.txt" }],
    ["GET", `/api/tasks/${task.id}`, undefined],
    ["GET", `/api/tasks/${task.id}/messages`, undefined],
    ["POST", `/api/tasks/${task.id}/messages`, { message: "echo follow > follow.txt" }],
    ["POST", `/api/tasks/${task.id}/stop`, undefined],
    ["POST", `/api/tasks/${task.id}/archive`, undefined],
    ["DELETE", `/api/tasks/${doomed.id}`, undefined],
    ["GET", `/api/tasks/${task.id}/diff`, undefined],
    ["GET", `/api/tasks/${task.id}/log`, undefined],
    ["GET", "/metrics", undefined],
  ];

  async function snapshot(): Promise<string> {
    const tasks = await t.api("GET", "/api/tasks", undefined, bearer);
    const messages = await Promise.all(
      [task.id, doomed.id].map((id) => t.api("GET", `/api/tasks/${id}/messages`, undefined, bearer)),
    );
    return JSON.stringify([tasks.body, messages.map((m) => m.body)]);
  }

  it("refuses a missing or wrong token on every route with 401 and changes nothing", async () => {
    await reliabilityCase(
      "auth",
      FILE,
      "every SPEC §5 route × {no header, wrong token, wrong scheme, token without scheme, empty bearer, token + suffix}",
      async (observe) => {
        const before = await snapshot();
        const attempts: Record<string, string>[] = [
          {},
          { authorization: "Bearer wrong" },
          { authorization: `Basic ${TOKEN}` },
          { authorization: TOKEN },
          { authorization: "Bearer " },
          { authorization: `Bearer ${TOKEN}x` },
          { authorization: `bearer${TOKEN}` },
        ];
        let refused = 0;
        for (const [method, path, body] of routes()) {
          for (const headers of attempts) {
            expectUnauthorized(
              await t.api(method, path, body, headers),
              `${method} ${path} ${JSON.stringify(headers)}`,
            );
            refused++;
          }
        }
        expect(await snapshot()).toBe(before);
        observe(`${refused} requests answered 401 UNAUTHORIZED in the error shape; tasks and messages unchanged`);
      },
    );
  });

  it("refuses every spelling of a protected path (percent-encoding) without the token", async () => {
    await reliabilityCase(
      "auth",
      FILE,
      "protected paths with random characters percent-encoded (e.g. /%61pi/tasks), no token",
      async (observe) => {
        const before = await snapshot();
        const paths = routes().map(([method, path]) => [method, path] as const);
        let refused = 0;
        await fc.assert(
          fc.asyncProperty(
            fc.constantFrom(...paths),
            fc.array(fc.boolean(), { minLength: 64, maxLength: 64 }),
            async ([method, path], encode) => {
              const spelled = [...path]
                .map((char, i) =>
                  char !== "/" && encode[i % 64] ? `%${char.charCodeAt(0).toString(16).padStart(2, "0")}` : char,
                )
                .join("");
              const response = await fetch(`${t.url}${spelled}`, { method });
              const text = await response.text();
              // Either refused, or not an API route at all (the web app's page, a 404): never API data.
              expect([401, 404, 200], `${method} ${spelled}`).toContain(response.status);
              if (response.status === 200) {
                expect(response.headers.get("content-type")).toContain("text/html");
                expect(text).not.toContain(task.id);
              } else {
                refused++;
              }
            },
          ),
          { numRuns: 150 },
        );
        expect(await snapshot()).toBe(before);
        observe(
          `150 spellings: ${refused} refused (401/404), ${150 - refused} got the web app's page; none got API data`,
        );
      },
    );
  });

  it("accepts the right token on every route", async () => {
    await reliabilityCase("auth", FILE, "every SPEC §5 route with the right token", async (observe) => {
      const answers: string[] = [];
      for (const [method, path, body] of routes()) {
        const response = await t.api<ErrorBody>(method, path, body, bearer);
        expect(response.status, `${method} ${path}`).not.toBe(401);
        expect(response.status, `${method} ${path}`).toBeLessThan(500);
        answers.push(`${method} ${path.replace(/[0-9a-f-]{36}/, ":id")} ${response.status}`);
        if (path.endsWith("/messages") && method === "POST") {
          await eventually(async () => {
            const { body: current } = await t.api<TaskBody>("GET", `/api/tasks/${task.id}`, undefined, bearer);
            return current.task.status === "COMPLETED";
          });
        }
      }
      observe(answers.join(", "));
    });
  });

  it("refuses a socket handshake without the right token, accepts the right one", async () => {
    await reliabilityCase(
      "auth",
      FILE,
      "socket handshake with no auth, wrong token, non-string token, token only in an Authorization header",
      async (observe) => {
        const attempt = (options: Parameters<typeof connect>[1]) =>
          new Promise<{ connected: boolean; error?: { message: string; data?: { code?: string } } }>((resolve) => {
            const socket = connect(t.url, {
              transports: ["websocket"],
              reconnection: false,
              forceNew: true,
              ...options,
            });
            socket.once("connect", () => {
              socket.close();
              resolve({ connected: true });
            });
            socket.once("connect_error", (error: Error & { data?: { code?: string } }) => {
              socket.close();
              resolve({ connected: false, error });
            });
          });
        const refusals = [
          {},
          { auth: { token: "wrong" } },
          { auth: { token: 42 } },
          { auth: { token: TOKEN.slice(0, -1) } },
          { extraHeaders: bearer },
        ];
        for (const options of refusals) {
          const result = await attempt(options as Parameters<typeof connect>[1]);
          expect(result.connected, JSON.stringify(options)).toBe(false);
          expect(result.error?.data?.code).toBe("UNAUTHORIZED");
        }
        observe(`${refusals.length} handshakes refused with connect_error UNAUTHORIZED`);
        const socket = connect(t.url, {
          transports: ["websocket"],
          reconnection: false,
          forceNew: true,
          auth: { token: TOKEN },
        });
        try {
          const ack = await socket.timeout(5000).emitWithAck("join-task", { taskId: task.id });
          expect(ack).toMatchObject({ ok: true, task: { id: task.id } });
        } finally {
          socket.close();
        }
        observe("the right token connects and join-task answers with the task");
      },
    );
  });
});

describe("listening beyond loopback", () => {
  it.each([
    ["0.0.0.0", {}],
    ["::", {}],
    ["0.0.0.0", { API_TOKEN: "   " }],
  ])("HOST=%s without a usable API_TOKEN refuses to start (%j)", async (host, extra) => {
    await reliabilityCase(
      "auth",
      FILE,
      `start with HOST=${host} and API_TOKEN ${JSON.stringify(extra)}`,
      async (observe) => {
        const dataDir = dataDirs.create("umbra-auth-host-");
        const server = await spawnServer({ dataDir, env: { HOST: host, ...extra }, waitHealthy: false });
        const code = await server.exited;
        expect(code).not.toBe(0);
        expect(typeof code).toBe("number");
        expect(server.output()).toMatch(/API_TOKEN/);
        observe(`exited with code ${code}: ${server.output().trim().split("\n").at(-1)}`);
      },
    );
  });
});

describe("secrets in remote mode", () => {
  const secrets = {
    OPENAI_API_KEY: "sk-test-secret-openai",
    ANTHROPIC_API_KEY: "sk-ant-test-secret",
    API_TOKEN: `api-${randomBytes(16).toString("hex")}`,
  };

  it("keeps the sidecar token out of the logs and the server's secrets out of the sandbox", async () => {
    const dataDir = dataDirs.create("umbra-auth-remote-");
    const server = await spawnServer({
      dataDir,
      token: secrets.API_TOKEN,
      env: { AGENT_MODE: "remote", LOG_LEVEL: "debug", TASK_CLEANUP_DELAY_MS: "600000", ...secrets },
    });
    let taskId = "";
    try {
      const created = await server.api<TaskBody>("POST", "/api/tasks", {
        repoUrl: createRepo(),
        message: "env | sort > env.txt; cat /proc/self/environ | tr '\\0' '\\n' > proc-env.txt",
      });
      expect(created.status).toBe(201);
      taskId = created.body.task.id;
      await eventually(
        async () => (await server.api<TaskBody>("GET", `/api/tasks/${taskId}`)).body.task.status === "COMPLETED",
      );

      await reliabilityCase(
        "auth",
        FILE,
        "remote sandbox of a server holding OPENAI_API_KEY, ANTHROPIC_API_KEY and API_TOKEN runs `env > env.txt`",
        async (observe) => {
          const diff = await server.api<{ patch: string; files: { path: string }[] }>(
            "GET",
            `/api/tasks/${taskId}/diff`,
          );
          expect(diff.body.files.map((f) => f.path).sort()).toEqual(["env.txt", "proc-env.txt"]);
          for (const [name, value] of Object.entries(secrets)) {
            expect(diff.body.patch, name).not.toContain(value);
          }
          expect(diff.body.patch).not.toMatch(/SIDECAR_TOKEN|DATABASE_URL/);
          const sandboxEnv = processEnvironment(sidecarPid(taskId)!);
          for (const name of Object.keys(secrets)) expect(sandboxEnv[name], name).toBeUndefined();
          observe(
            `the agent's environment (${diff.body.patch.split("\n").filter((l) => l.startsWith("+") && l.includes("=")).length} lines) holds none of the server's secrets nor the sidecar token; neither does the sidecar process`,
          );
        },
      );

      await reliabilityCase(
        "auth",
        FILE,
        "per-VM sidecar token vs. the server's debug logs (LOG_LEVEL=debug)",
        async (observe) => {
          // The token reaches the sidecar through a pipe: no process of the sandbox has it in its environment.
          const record = readSandboxRecord(dataDir, taskId)!;
          const holders = [record.launcherPid, sidecarPid(taskId)!];
          for (const pid of holders) expect(processEnvironment(pid).SIDECAR_TOKEN, `pid ${pid}`).toBeUndefined();
          const answers = (token: string) =>
            new SidecarClient({ endpoint: record.endpoint!, token }).health().then(
              () => 200,
              (error: { status?: number }) => error.status ?? 0,
            );
          expect(await answers("x".repeat(43))).toBe(401);
          observe("no process of the sandbox holds the token in its environment; a wrong token is refused");

          // Error paths log the most: a second sandbox dies in the middle of a turn.
          const doomed = (
            await server.api<TaskBody>("POST", "/api/tasks", { repoUrl: createRepo(), message: "sleep 30" })
          ).body.task;
          await eventually(
            async () => (await server.api<TaskBody>("GET", `/api/tasks/${doomed.id}`)).body.task.status === "RUNNING",
          );
          process.kill(sidecarPid(doomed.id)!, "SIGKILL");
          await eventually(
            async () => (await server.api<TaskBody>("GET", `/api/tasks/${doomed.id}`)).body.task.status === "FAILED",
          );
          const logs = server.output();
          expect(logs).toMatch(/"level":50/); // the failure was logged with its errors
          for (const [name, value] of Object.entries(secrets)) {
            expect(logs.includes(value), `${name} in the server's logs`).toBe(false);
          }
          const tokenFields = [...logs.matchAll(/"(?:token|apiKey|authorization)":("[^"]*")/gi)].map((m) => m[1]);
          expect(tokenFields.filter((value) => value !== '"[redacted]"')).toEqual([]);
          // Whatever in the logs looks like a token (43 base64url characters) is not this sandbox's token.
          const lookalikes = (logs.match(/(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g) ?? []).filter(
            (candidate) => /[A-Z]/.test(candidate) && /[a-z]/.test(candidate),
          );
          for (const candidate of lookalikes) expect(await answers(candidate)).toBe(401);
          observe(
            `${logs.split("\n").length} debug log lines, including a sandbox killed mid-turn: no API key, no API token; ${tokenFields.length ? `${tokenFields.length} token-named fields, all "[redacted]"` : "no token-named field"}; ${lookalikes.length} token-like values, none accepted by the sidecar`,
          );
        },
      );
    } finally {
      expect(await server.stop()).toBe(0);
    }
    await destroySandboxes(dataDir);
    expect(await settleProcessesUnder(dataDir), describeProcessesUnder(dataDir)).toEqual([]);
  }, 60_000);
});
