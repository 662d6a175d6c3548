/**
 * Property-based fuzzing of the API (SPEC §5) and the socket events (SPEC §6)
 * with fast-check, against a real in-process server holding one finished
 * task. For arbitrary bodies, content types, ids, methods, raw bytes on the
 * socket and socket payloads:
 * - never a 500, and the server keeps answering /api/health;
 * - every error answer is `{"error":{"code","message"}}` with a known code;
 * - a rejected request changes nothing (tasks and messages are compared
 *   before and after every property).
 * Inputs that would be accepted and change state (a valid follow-up to the
 * task, archiving or deleting it) are left out with fc.pre: this suite is
 * about bad input.
 *
 * Control characters (NUL, other C0 and C1 controls, DEL, lone surrogates)
 * get properties of their own: in every text field of every body (400
 * VALIDATION_ERROR naming the field) and in the path and query of every route.
 */
import { connect as connectTcp } from "node:net";
import { CreateTaskBodySchema, ERROR_CODES, FollowUpBodySchema, type TaskDto } from "@repo/types";
import fc from "fast-check";
import { io as connect, type Socket } from "socket.io-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRepo } from "../../../test/support/git";
import { eventually } from "../../../test/support/lifecycle";
import { reliabilityCase } from "../../../test/support/reliability";
import { startTestServer, type TestServer } from "../../../test/support/server";

const FILE = "api-fuzz.test.ts";
const RUNS = 200;
const KNOWN_CODES = new Set<string>(ERROR_CODES);

type Answer = { status: number; contentType: string; text: string };

/** Printable ASCII, for header values fetch will send. */
const headerText = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
  maxLength: 60,
});
const contentTypes = fc.oneof(
  fc.constantFrom(
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "application/json; charset=latin1",
    "text/plain",
    "text/html",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "application/vnd.api+json",
    "*/*",
    "",
  ),
  headerText,
);
const jsonBodies = fc.jsonValue({ maxDepth: 4 });
const nearMissBodies = fc.record(
  {
    repoUrl: fc.oneof(
      fc.string(),
      fc.constantFrom("/", "/nonexistent", "file://", "http://", "relative/path"),
      fc.jsonValue(),
    ),
    message: fc.oneof(fc.string({ maxLength: 5 }), fc.constant(" \n\t "), fc.jsonValue()),
    baseBranch: fc.oneof(fc.string(), fc.constantFrom("a..b", "-x", "x.lock", "@{u}", "a b", "/a", "a/")),
    title: fc.oneof(fc.string({ maxLength: 300 }), fc.jsonValue()),
    extra: fc.jsonValue(),
  },
  { requiredKeys: [] },
);
/** One character no text field accepts; `multiline` leaves out tab, line feed and carriage return. */
const controlCharacter = (multiline: boolean) =>
  fc.oneof(
    fc.constant("\u0000"),
    fc
      .integer({ min: 0, max: 0x1f })
      .filter((code) => !multiline || ![0x09, 0x0a, 0x0d].includes(code))
      .map((code) => String.fromCharCode(code)),
    fc.integer({ min: 0x7f, max: 0x9f }).map((code) => String.fromCharCode(code)),
    fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code)),
  );

/** Percent-encoding of one character; a lone surrogate (which encodeURIComponent refuses) as its three raw bytes. */
function percentEncoded(char: string): string {
  const code = char.charCodeAt(0);
  if (code < 0xd800 || code > 0xdfff) return encodeURIComponent(char);
  const bytes = [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)];
  return bytes.map((b) => `%${b.toString(16).toUpperCase()}`).join("");
}

/** `text` with `char` put in at a position chosen by `at` (0..1). */
function insertAt(text: string, char: string, at: number): string {
  const index = Math.floor(at * (text.length + 1));
  return text.slice(0, index) + char + text.slice(index);
}

const rawBodies = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.string({ unit: "binary", maxLength: 300 }),
  jsonBodies.map((v) => JSON.stringify(v)),
  fc.constantFrom(
    '{"repoUrl":',
    "{",
    "[",
    "null",
    '{"__proto__":{"x":1}}',
    '{"constructor":{"prototype":{}}}',
    "\u0000",
  ),
);

describe("fuzzing the HTTP API and the socket events", () => {
  let t: TestServer;
  let task: TaskDto;
  /** What came back during the current property, e.g. "400" or "ack VALIDATION_ERROR", with counts. */
  let outcomes = new Map<string, number>();
  const tally = (outcome: string) => outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);

  beforeAll(async () => {
    // DELIVERY=none: a background push would change the task between the snapshots this file compares.
    t = await startTestServer({ env: { DELIVERY: "none" } });
    task = (
      await t.api<{ task: TaskDto }>("POST", "/api/tasks", { repoUrl: createRepo(), message: "echo hi > hi.txt" })
    ).body.task;
    await eventually(
      async () => (await t.api<{ task: TaskDto }>("GET", `/api/tasks/${task.id}`)).body.task.status === "COMPLETED",
    );
  });
  afterAll(() => t.close());

  async function snapshot(): Promise<string> {
    const [tasks, messages, diff] = await Promise.all([
      t.api("GET", "/api/tasks"),
      t.api("GET", `/api/tasks/${task.id}/messages`),
      t.api("GET", `/api/tasks/${task.id}/diff`),
    ]);
    return JSON.stringify([tasks.body, messages.body, diff.body]);
  }

  async function send(method: string, path: string, body?: string, headers: Record<string, string> = {}) {
    const response = await fetch(`${t.url}${path}`, { method, headers, body });
    tally(String(response.status));
    return {
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
      text: await response.text(),
    };
  }

  /** The invariants every answer to bad input keeps. */
  function checkAnswer(answer: Answer, what: string): void {
    expect(answer.status, what).toBeLessThan(500);
    if (answer.status < 400 || answer.text === "") return;
    expect(answer.contentType, what).toContain("application/json");
    const body = JSON.parse(answer.text) as { error?: { code?: unknown; message?: unknown } };
    expect(Object.keys(body), what).toEqual(["error"]);
    expect(Object.keys(body.error ?? {}).sort(), what).toEqual(["code", "message"]);
    expect(KNOWN_CODES.has(body.error!.code as string), `${what}: code ${String(body.error!.code)}`).toBe(true);
    expect(typeof body.error!.message, what).toBe("string");
  }

  /** Runs a property, then checks the server still answers and the state is what it was. */
  async function fuzz<Ts>(fault: string, property: fc.IAsyncPropertyWithHooks<Ts>) {
    await reliabilityCase("fuzzing", FILE, fault, async (observe) => {
      const before = await snapshot();
      outcomes = new Map();
      await fc.assert(property, { numRuns: RUNS });
      expect((await t.api("GET", "/api/health")).status).toBe(200);
      expect(await snapshot()).toBe(before);
      const seen = [...outcomes].sort((a, b) => b[1] - a[1]).map(([outcome, n]) => `${outcome} ×${n}`);
      observe(`${RUNS} runs; answers: ${seen.join(", ")}`);
      observe("no 500, every error answer in the shape with a known code, health still 200, state unchanged");
    });
  }

  it("POST /api/tasks with arbitrary JSON bodies", async () => {
    await fuzz(
      "POST /api/tasks with arbitrary JSON values and near-miss task objects",
      fc.asyncProperty(fc.oneof(jsonBodies, nearMissBodies), async (body) => {
        fc.pre(!CreateTaskBodySchema.safeParse(body).success);
        const answer = await send("POST", "/api/tasks", JSON.stringify(body), { "content-type": "application/json" });
        checkAnswer(answer, `body ${JSON.stringify(body)}`);
        expect(answer.status).toBe(400);
      }),
    );
  });

  it("raw bodies with arbitrary content types on the routes that take a body", async () => {
    await fuzz(
      "raw strings/bytes × arbitrary content types on POST /api/tasks and POST /api/tasks/:id/messages",
      fc.asyncProperty(
        fc.constantFrom("/api/tasks", `/api/tasks/${task.id}/messages`),
        rawBodies,
        contentTypes,
        async (path, body, contentType) => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(body);
          } catch {
            parsed = undefined;
          }
          const schema = path === "/api/tasks" ? CreateTaskBodySchema : FollowUpBodySchema;
          fc.pre(!schema.safeParse(parsed).success);
          const answer = await send("POST", path, body, contentType ? { "content-type": contentType } : {});
          checkAnswer(answer, `${path} ${contentType} ${JSON.stringify(body)}`);
          expect(answer.status).toBeGreaterThanOrEqual(400);
        },
      ),
    );
  });

  it("weird task ids on every :id route", async () => {
    const routes: [string, string][] = [
      ["GET", "/api/tasks/:id"],
      ["GET", "/api/tasks/:id/messages"],
      ["GET", "/api/tasks/:id/diff"],
      ["POST", "/api/tasks/:id/messages"],
      ["POST", "/api/tasks/:id/stop"],
      ["POST", "/api/tasks/:id/archive"],
      ["DELETE", "/api/tasks/:id"],
      ["GET", "/api/tasks/:id/log"],
    ];
    const ids = fc.oneof(
      fc.uuid(),
      fc.string({ maxLength: 80 }),
      fc.string({ unit: "binary", maxLength: 40 }),
      fc.constantFrom("..", ".", "%2e%2e", "null", "undefined", "0", "-1", "00000000-0000-0000-0000-000000000000"),
      fc.constantFrom(`${task.id}x`, ` ${task.id}`, task.id.slice(0, -1), task.id.toUpperCase(), `${task.id}/..`),
    );
    await fuzz(
      "arbitrary ids (UUIDs, strings, bytes, traversal, near-misses of a real id) × every :id route",
      fc.asyncProperty(fc.constantFrom(...routes), ids, fc.boolean(), async ([method, route], id, encode) => {
        const changesState = method === "DELETE" || route.endsWith("/archive") || route.endsWith("/messages");
        // The real task under another spelling (upper case) must not be archived, deleted or followed up here.
        fc.pre(!(changesState && id.toLowerCase() === task.id));
        const path = route.replace(":id", encode ? encodeURIComponent(id) : id.replace(/[?#]/g, ""));
        const body = method === "POST" && route.endsWith("/messages") ? JSON.stringify({ message: "x" }) : undefined;
        let answer: Answer;
        try {
          answer = await send(method, path, body, body ? { "content-type": "application/json" } : {});
        } catch (error) {
          if (error instanceof TypeError) return; // fetch refused to send this URL
          throw error;
        }
        checkAnswer(answer, `${method} ${path}`);
      }),
    );
  });

  it("random methods on every route", async () => {
    const paths = [
      "/api/health",
      "/api/config",
      "/api/tasks",
      "/api/tasks/:id",
      "/api/tasks/:id/messages",
      "/api/tasks/:id/stop",
      "/api/tasks/:id/archive",
      "/api/tasks/:id/diff",
      "/api/tasks/:id/log",
      "/metrics",
      "/api/nothing",
    ];
    const methods = fc.oneof(
      fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND", "MKCOL", "SEARCH"),
      fc.stringMatching(/^[A-Z]{1,12}$/),
    );
    await fuzz(
      "random methods (standard, WebDAV, made-up) × every route, without a body",
      fc.asyncProperty(fc.constantFrom(...paths), methods, fc.boolean(), async (route, method, realId) => {
        const mutating =
          (method === "DELETE" && route === "/api/tasks/:id") ||
          (method === "POST" && (route.endsWith("/archive") || route === "/api/tasks/:id/messages"));
        const path = route.replace(":id", realId && !mutating ? task.id : "7b1c1d52-2a8e-4f6f-9a34-0ab1e0a54e11");
        let answer: Answer;
        try {
          answer = await send(method, path);
        } catch (error) {
          if (error instanceof TypeError) return; // a method fetch will not send (CONNECT, TRACE, ...)
          throw error;
        }
        if (method === "HEAD") expect(answer.status, `${method} ${path}`).toBeLessThan(500);
        else checkAnswer(answer, `${method} ${path}`);
      }),
    );
  });

  it("control characters in every text field of every body → 400 naming the field", async () => {
    const repo = createRepo();
    const valid = { repoUrl: repo, message: "echo fuzz", baseBranch: "main", title: "a title" };
    type Field = "repoUrl" | "message" | "baseBranch" | "title" | "followUp";
    const fields: Field[] = ["repoUrl", "message", "baseBranch", "title", "followUp"];
    await fuzz(
      "NUL, C0/C1 controls, DEL and lone surrogates inserted into repoUrl, message, baseBranch, title (POST /api/tasks) and message (follow-up)",
      fc.asyncProperty(
        fc.constantFrom(...fields),
        fc.boolean().chain((multiline) => controlCharacter(multiline)),
        fc.double({ min: 0, max: 1, noNaN: true }),
        async (field, char, at) => {
          const multiline = field === "message" || field === "followUp";
          fc.pre(!(multiline && ["\t", "\n", "\r"].includes(char)));
          const name = field === "followUp" ? "message" : field;
          let answer: Answer;
          if (field === "followUp") {
            const body = JSON.stringify({ message: insertAt("echo follow", char, at) });
            answer = await send("POST", `/api/tasks/${task.id}/messages`, body, { "content-type": "application/json" });
          } else {
            const body = JSON.stringify({ ...valid, [field]: insertAt(valid[field], char, at) });
            answer = await send("POST", "/api/tasks", body, { "content-type": "application/json" });
          }
          checkAnswer(answer, `${field} with U+${char.charCodeAt(0).toString(16)}`);
          expect(answer.status).toBe(400);
          const { error } = JSON.parse(answer.text) as { error: { code: string; message: string } };
          expect(error.code).toBe("VALIDATION_ERROR");
          // Checked before trimming: a control character at either end is refused too, never trimmed away.
          expect(error.message).toContain(`${name} must not contain`);
        },
      ),
    );
  });

  it("control characters in the path and query of every route", async () => {
    const routes: [string, string][] = [
      ["GET", "/api/health"],
      ["GET", "/api/config"],
      ["GET", "/api/tasks"],
      ["POST", "/api/tasks"],
      ["GET", "/api/tasks/:id"],
      ["GET", "/api/tasks/:id/messages"],
      ["POST", "/api/tasks/:id/messages"],
      ["POST", "/api/tasks/:id/stop"],
      ["POST", "/api/tasks/:id/archive"],
      ["DELETE", "/api/tasks/:id"],
      ["GET", "/api/tasks/:id/diff"],
      ["GET", "/api/tasks/:id/log"],
      ["GET", "/metrics"],
    ];
    await fuzz(
      "control characters, percent-encoded, in the id, the path and the query string of every route",
      fc.asyncProperty(
        fc.constantFrom(...routes),
        fc.boolean().chain((multiline) => controlCharacter(multiline)),
        fc.constantFrom("id", "path", "query"),
        async ([method, route], char, where) => {
          const encoded = percentEncoded(char);
          const id = route.includes(":id") && where === "id" ? `${task.id}${encoded}` : task.id;
          let path = route.replace(":id", id);
          if (where === "path") path = `${path}/${encoded}`;
          if (where === "query") path = `${path}?repoUrl=${encoded}&title=x${encoded}`;
          const mutating = method !== "GET" && where === "query";
          // The real task with a harmless query string would be archived, deleted or followed up: not bad input.
          fc.pre(!(mutating && route.includes(":id")));
          const answer = await send(method, path);
          checkAnswer(answer, `${method} ${path}`);
        },
      ),
    );
  });

  it("raw bytes on the HTTP socket", async () => {
    const port = Number(new URL(t.url).port);
    const exchange = (bytes: Buffer) =>
      new Promise<string>((resolve) => {
        const socket = connectTcp(port, "127.0.0.1");
        let received = "";
        socket.on("data", (chunk) => {
          received += chunk.toString("latin1");
        });
        socket.on("error", () => resolve(received));
        socket.on("close", () => resolve(received));
        socket.write(bytes);
        socket.end();
      });
    const requestLines = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
      fc
        .tuple(
          fc.stringMatching(/^[A-Z]{0,8}$/),
          fc.string({ maxLength: 40 }),
          fc.constantFrom("HTTP/1.1", "HTTP/9.9", "", "HTTP/1.1\r\nHost: x"),
        )
        .map(([m, p, v]) => Buffer.from(`${m} /api/${p} ${v}\r\n\r\n`, "utf8")),
      fc
        .string({ maxLength: 200 })
        .map((h) =>
          Buffer.from(`POST /api/tasks HTTP/1.1\r\nHost: x\r\n${h}\r\nContent-Length: 5\r\n\r\n{"a":`, "utf8"),
        ),
    );
    await fuzz(
      "arbitrary bytes, broken request lines and headers written to the HTTP port",
      fc.asyncProperty(requestLines, async (bytes) => {
        const answer = await exchange(bytes);
        if (!answer) {
          tally("closed without an answer");
          return;
        }
        const [head = "", body = ""] = answer.split("\r\n\r\n");
        const status = Number(head.split(" ")[1]);
        tally(String(status));
        expect(status, head).toBeLessThan(500);
        if (status >= 400 && body && !/transfer-encoding: chunked/i.test(head)) {
          checkAnswer({ status, contentType: /content-type: ([^\r]*)/i.exec(head)?.[1] ?? "", text: body }, head);
        }
      }),
    );
  });

  describe("socket events", () => {
    let socket: Socket;
    beforeAll(async () => {
      socket = connect(t.url, { transports: ["websocket"], reconnection: false, forceNew: true });
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", () => resolve());
        socket.once("connect_error", reject);
      });
    });
    afterAll(() => socket.close());

    const RESERVED = new Set([
      "connect",
      "connect_error",
      "disconnect",
      "disconnecting",
      "newListener",
      "removeListener",
    ]);
    const payloads = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.record({ taskId: fc.oneof(fc.uuid(), fc.string(), fc.jsonValue()) }, { requiredKeys: [] }),
      fc.record({ taskId: fc.uuid(), extra: fc.jsonValue() }),
      fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
      fc.constant(undefined),
    );

    it("arbitrary payloads for join-task, leave-task and unknown events", async () => {
      await fuzz(
        "socket: arbitrary payloads (JSON, binary, none) for join-task / leave-task / unknown events, with and without ack",
        fc.asyncProperty(
          fc.oneof(
            { arbitrary: fc.constantFrom("join-task", "leave-task"), weight: 3 },
            { arbitrary: fc.string({ minLength: 1, maxLength: 30 }).filter((name) => !RESERVED.has(name)), weight: 1 },
          ),
          fc.array(payloads, { maxLength: 3 }),
          fc.integer({ min: 0, max: 3 }).map((n) => n > 0), // with an ack three times in four
          async (event, args, withAck) => {
            if (!withAck || (event !== "join-task" && event !== "leave-task")) {
              socket.emit(event, ...args);
              tally("emitted without ack");
              return;
            }
            const ack = (await socket.timeout(5000).emitWithAck(event, ...args)) as {
              ok?: unknown;
              task?: { id?: string };
              error?: { code?: string; message?: string };
            };
            expect(typeof ack.ok).toBe("boolean");
            tally(`${event} ack ${ack.ok ? "ok" : (ack.error?.code ?? "ok:false")}`);
            if (event === "join-task" && ack.ok === false) {
              expect(KNOWN_CODES.has(ack.error?.code ?? "")).toBe(true);
              expect(ack.error?.code).not.toBe("INTERNAL");
              expect(typeof ack.error?.message).toBe("string");
            }
            if (ack.ok === true && event === "join-task") expect(ack.task?.id).toBe(task.id);
          },
        ),
      );
      expect(socket.connected).toBe(true);
      const joined = await socket.timeout(5000).emitWithAck("join-task", { taskId: task.id });
      expect(joined).toMatchObject({ ok: true, task: { id: task.id } });
    });
  });
});
