import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { FeedError, runGit } from "../src/git";
import { runInProcessGroup } from "../src/process-group";
import {
  runProgram,
  type StdinFeed,
  spawnHostPid,
  spawnHostRunning,
  spawnProcess,
  startSpawnHost,
  stopSpawnHost,
} from "../src/spawn-host";
import { TEST_GIT_ENV, tempDir } from "./helpers";

describe("the spawn host", () => {
  beforeAll(startSpawnHost);
  afterAll(stopSpawnHost);

  it("starts processes in another process: the pid comes later, and the streams carry every byte both ways", async () => {
    const dir = await tempDir();
    const child = spawnProcess("git", ["version"], { cwd: dir, env: TEST_GIT_ENV, stdio: ["pipe", "pipe", "pipe"] });
    expect(spawnHostRunning()).toBe(true);
    expect(child.pid).toBeUndefined();
    child.stdin!.end();
    child.stdout!.resume();
    child.stderr!.resume();
    await new Promise((resolve) => child.once("close", resolve));
    expect(child.pid).toBeGreaterThan(0);

    // 8 MiB of random bytes in through stdin (hashed by git) and back out through stdout.
    const data = randomBytes(8 * 1024 * 1024);
    await runGit(["init", "-q"], { cwd: dir, env: TEST_GIT_ENV });
    const stored = await runGit(["hash-object", "-w", "--stdin"], {
      cwd: dir,
      env: TEST_GIT_ENV,
      stdin: Readable.from([data.subarray(0, 1 << 20), data.subarray(1 << 20)]),
    });
    expect(stored.exitCode).toBe(0);
    const sha = stored.stdout.toString().trim();
    const chunks: Buffer[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        callback();
      },
    });
    const read = await runGit(["cat-file", "blob", sha], { cwd: dir, env: TEST_GIT_ENV, stdout: sink });
    expect(read.exitCode).toBe(0);
    expect(createHash("sha256").update(Buffer.concat(chunks)).digest("hex")).toBe(
      createHash("sha256").update(data).digest("hex"),
    );
  });

  it("reports exit codes, stderr, a program that does not exist, and many processes at once", async () => {
    const dir = await tempDir();
    const failed = await runGit(["rev-parse", "--verify", "no-such-ref"], { cwd: dir, env: TEST_GIT_ENV });
    expect(failed.exitCode).toBe(128);
    expect(failed.stderr).toMatch(/not a git repository/);

    const missing = spawnProcess(join(dir, "no-such-program"), [], {
      cwd: dir,
      env: {},
      stdio: ["ignore", "pipe", "pipe"],
    });
    const error = await new Promise<NodeJS.ErrnoException>((resolve) => missing.once("error", resolve));
    expect(error.code).toBe("ENOENT");

    const many = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        runGit(["hash-object", "--stdin"], { cwd: dir, env: TEST_GIT_ENV, input: `${i}\n` }),
      ),
    );
    expect(many.every((result) => result.exitCode === 0 && /^[0-9a-f]{40}\n$/.test(result.stdout.toString()))).toBe(
      true,
    );
  });

  it("stops a process asked to stop before the host said it had started it", async () => {
    const dir = await tempDir();
    const controller = new AbortController();
    const running = runGit(["-c", "alias.wait=!sleep 30", "wait"], {
      cwd: dir,
      env: TEST_GIT_ENV,
      signal: controller.signal,
    });
    controller.abort();
    const result = await running;
    expect(result.aborted).toBe(true);
    expect(result.exitCode).toBeNull();

    const command = new AbortController();
    const output: string[] = [];
    const stopped = runInProcessGroup("echo started; sleep 30", {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      signal: command.signal,
      onOutput: (_stream, text) => {
        output.push(text);
        return undefined;
      },
    });
    command.abort();
    expect(await stopped).toMatchObject({ aborted: true });
  });

  it("runs a command's group with its output and exit code", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "note.txt"), "hello\n");
    const output = { stdout: "", stderr: "" };
    const result = await runInProcessGroup("cat note.txt; echo oops >&2; exit 3", {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      onOutput: (stream, text) => {
        output[stream] += text;
        return undefined;
      },
    });
    expect(result).toMatchObject({ exitCode: 3, timedOut: false, aborted: false });
    expect(output).toEqual({ stdout: "hello\n", stderr: "oops\n" });
  });

  it("runs a program to its end, with its stdout or with the reason it failed", async () => {
    const dir = await tempDir();
    expect(await runProgram("sh", ["-c", "echo out; echo err >&2"], { cwd: dir })).toBe("out\n");
    await expect(runProgram("sh", ["-c", "echo broken >&2; exit 4"], { cwd: dir })).rejects.toThrow(
      "sh exited with code 4: broken",
    );
    await expect(runProgram(join(dir, "missing"), [], { cwd: dir })).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("lives outside the caller's process group, and ends with its caller however that ends", async () => {
    const group = (pid: number | "self") => readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[2];
    expect(group(spawnHostPid()!)).not.toBe(group("self"));

    // A caller killed outright: its host notices, removes the socket directory and exits.
    const caller = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        `const host = await import(${JSON.stringify(new URL("../src/spawn-host.ts", import.meta.url).href)});
         await host.startSpawnHost();
         console.log(host.spawnHostPid());
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"], cwd: fileURLToPath(new URL(".", import.meta.url)) },
    );
    const hostPid = Number(
      await new Promise<string>((resolve) => caller.stdout.once("data", (chunk: Buffer) => resolve(chunk.toString()))),
    );
    // The host is started with its socket directory as its last argument.
    const socketDir = readFileSync(`/proc/${hostPid}/cmdline`, "utf8").split("\0").filter(Boolean).at(-1)!;
    expect(socketDir.startsWith(join(tmpdir(), "umbra-spawn-"))).toBe(true);
    expect(existsSync(socketDir)).toBe(true);
    caller.kill("SIGKILL");
    await vi.waitFor(() => expect(existsSync(`/proc/${hostPid}`)).toBe(false), { timeout: 10_000 });
    expect(existsSync(socketDir)).toBe(false);
  });

  it("is started once for callers at the same moment", async () => {
    await stopSpawnHost();
    await Promise.all([startSpawnHost(), startSpawnHost(), startSpawnHost()]);
    const pid = spawnHostPid();
    const hosts = readdirSync("/proc").filter((name) => {
      try {
        return (
          /^\d+$/.test(name) &&
          readFileSync(`/proc/${name}/stat`, "utf8").split(") ")[1]!.split(" ")[1] === String(process.pid)
        );
      } catch {
        return false; // gone while we looked
      }
    });
    expect(hosts).toEqual([String(pid)]);
  });

  it("starts processes directly once the host is gone, and refuses a stdin feed then", async () => {
    await stopSpawnHost();
    expect(spawnHostRunning()).toBe(false);
    const dir = await tempDir();
    expect(() =>
      spawnProcess("git", ["version"], {
        cwd: dir,
        env: TEST_GIT_ENV,
        stdio: ["ignore", "pipe", "pipe"],
        stdinFeed: { endpoint: "unix:/nowhere", method: "GET", path: "/", headers: {}, idleTimeoutMs: 1000 },
      }),
    ).toThrow(/spawn host/);
    const child = spawnProcess("git", ["version"], { cwd: dir, env: TEST_GIT_ENV, stdio: ["ignore", "pipe", "pipe"] });
    expect(child.pid).toBeGreaterThan(0);
    child.stdout!.resume();
    child.stderr!.resume();
    await new Promise((resolve) => child.once("close", resolve));
    await startSpawnHost();
  });
});

describe("a stdin feed (an HTTP reply piped into a process by the spawn host)", () => {
  let socketDir: string;
  let socketPath: string;
  let server: Server;
  const requests: { method?: string; url?: string; authorization?: string; body: string }[] = [];
  const body = randomBytes(3 * 1024 * 1024 + 5);

  beforeAll(async () => {
    await startSpawnHost();
    // Not tempDir(): that is removed after each test, and the socket serves them all.
    socketDir = mkdtempSync(join(tmpdir(), "umbra-feed-test-"));
    socketPath = join(socketDir, "http.sock");
    server = createServer((request, response) => {
      let text = "";
      request.setEncoding("utf8").on("data", (chunk: string) => {
        text += chunk;
      });
      request.on("end", () => {
        requests.push({
          method: request.method,
          url: request.url,
          authorization: request.headers.authorization,
          body: text,
        });
        if (request.url === "/body") {
          // In pieces, as a stream would come.
          response.writeHead(200, { "content-type": "application/octet-stream" });
          response.write(body.subarray(0, 1000));
          response.end(body.subarray(1000));
        } else if (request.url === "/refused") {
          response.writeHead(409, { "content-type": "application/json" });
          response.end(JSON.stringify({ error: { code: "CONFLICT", message: "not now" } }));
        } else if (request.url === "/stall") {
          response.writeHead(200);
          response.write(body.subarray(0, 100));
          // Then nothing more: the feed's idle limit ends it.
        } else {
          response.writeHead(200);
          response.end(body);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(socketDir, { recursive: true, force: true });
    await stopSpawnHost();
  });

  const feed = (path: string, idleTimeoutMs = 30_000): StdinFeed => ({
    endpoint: `unix:${socketPath}`,
    method: "POST",
    path,
    headers: { authorization: "Bearer secret-token", "content-type": "application/json" },
    body: JSON.stringify({ ask: path }),
    idleTimeoutMs,
  });

  it("sends the request once and gives the process the whole body; the caller gets its size and first bytes", async () => {
    const dir = await tempDir();
    const before = requests.length;
    const result = await runGit(["hash-object", "--stdin"], { cwd: dir, env: TEST_GIT_ENV, stdinFeed: feed("/body") });
    expect(result.exitCode).toBe(0);
    const expected = await runGit(["hash-object", "--stdin"], { cwd: dir, env: TEST_GIT_ENV, input: body });
    expect(result.stdout.toString()).toBe(expected.stdout.toString());
    expect(result.feed).toEqual({ bytes: body.length, head: body.subarray(0, 16), failure: null });
    expect(requests.slice(before)).toEqual([
      { method: "POST", url: "/body", authorization: "Bearer secret-token", body: '{"ask":"/body"}' },
    ]);
  });

  it("ends the process's input when the reply is an error, and says what the sender answered", async () => {
    const dir = await tempDir();
    await runGit(["init", "-q"], { cwd: dir, env: TEST_GIT_ENV });
    const result = await runGit(["index-pack", "--stdin"], {
      cwd: dir,
      env: TEST_GIT_ENV,
      stdinFeed: feed("/refused"),
    });
    expect(result.exitCode).toBeNull();
    expect(result.inputError).toBeInstanceOf(FeedError);
    expect(result.inputError).toMatchObject({
      status: 409,
      reply: '{"error":{"code":"CONFLICT","message":"not now"}}',
      bytes: 0,
      byProcess: false,
    });
  });

  it("fails when nobody answers, and when the body stops coming for the idle limit", async () => {
    const dir = await tempDir();
    await runGit(["init", "-q"], { cwd: dir, env: TEST_GIT_ENV });
    const nobody = await runGit(["hash-object", "--stdin"], {
      cwd: dir,
      env: TEST_GIT_ENV,
      // hash-object hashes whatever it got: it exits 0 on the empty input a failed feed leaves.
      stdinFeed: { ...feed("/"), endpoint: `unix:${join(dir, "no-such.sock")}` },
    });
    expect(nobody.exitCode).toBe(0);
    expect(nobody.feed?.failure).toMatchObject({ status: 0, byProcess: false });
    expect(nobody.feed?.bytes).toBe(0);

    const stalled = await runGit(["hash-object", "--stdin"], {
      cwd: dir,
      env: TEST_GIT_ENV,
      stdinFeed: feed("/stall", 300),
    });
    expect(stalled.exitCode).toBe(0);
    expect(stalled.feed).toEqual({
      bytes: 100,
      head: body.subarray(0, 16),
      failure: { status: 0, reply: "", message: "nothing arrived for 300 ms", byProcess: false },
    });
  });

  it("stops the request when the process exits before reading its input", async () => {
    const dir = await tempDir();
    const result = await runGit(["rev-parse", "--verify", "no-such-ref"], {
      cwd: dir,
      env: TEST_GIT_ENV,
      stdinFeed: feed("/stall", 30_000),
    });
    expect(result.exitCode).toBeNull();
    expect(result.inputError).toMatchObject({ byProcess: true });
    expect(result.stderr).toMatch(/not a git repository/);
  });
});

// Every runner test again, through the host.
describe("through the spawn host", async () => {
  beforeAll(startSpawnHost);
  afterAll(stopSpawnHost);
  await import("./git.test");
  await import("./run-command.test");
});
