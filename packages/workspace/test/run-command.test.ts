import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createLocalExecutor } from "../src/local-executor";
import type { RunCommandOptions } from "../src/types";
import { processGone, tempDir } from "./helpers";

async function run(command: string, options: RunCommandOptions & { killGraceMs?: number } = {}) {
  const root = await tempDir();
  const executor = createLocalExecutor(root, { killGraceMs: options.killGraceMs, home: await tempDir("umbra-home-") });
  const output = { stdout: "", stderr: "" };
  const result = await executor.runCommand(command, {
    ...options,
    onOutput: (stream, text) => {
      output[stream] += text;
      options.onOutput?.(stream, text);
    },
  });
  return { root, result, output };
}

/** Runs `command`, which must print a pid on its first line, and aborts once that line has arrived. */
async function abortAfterPid(command: string, killGraceMs?: number) {
  const controller = new AbortController();
  let pid = 0;
  let abortedAt = 0;
  const { result } = await run(command, {
    signal: controller.signal,
    killGraceMs,
    onOutput: (_stream, text) => {
      const match = /^(\d+)\n/.exec(text);
      if (match && !pid) {
        pid = Number(match[1]);
        abortedAt = Date.now();
        controller.abort();
      }
    },
  });
  return { result, pid, settledAfterMs: Date.now() - abortedAt };
}

describe("running commands", () => {
  const started: number[] = [];
  afterEach(() => {
    for (const pid of started.splice(0)) expect(processGone(pid), `process ${pid} leaked`).toBe(true);
  });

  it("streams stdout and stderr separately and reports the exit code", async () => {
    const { result, output } = await run("echo out; echo err >&2; exit 3");
    expect(output).toEqual({ stdout: "out\n", stderr: "err\n" });
    expect(result).toEqual({ exitCode: 3, signal: null, timedOut: false, aborted: false });
  });

  it("runs in the workspace directory", async () => {
    const { root, output } = await run("pwd");
    expect(output.stdout.trim()).toBe(root);
  });

  it("reports a command ended by a signal", async () => {
    const { result } = await run("kill -TERM $$");
    expect(result).toMatchObject({ exitCode: null, signal: "SIGTERM", aborted: false });
  });

  it("delivers output while the command is still running", async () => {
    const controller = new AbortController();
    const { result, output } = await run("echo first; sleep 30", {
      signal: controller.signal,
      onOutput: (_stream, text) => {
        if (text.includes("first")) controller.abort();
      },
    });
    expect(output.stdout).toBe("first\n");
    expect(result.aborted).toBe(true);
  });

  it("decodes a UTF-8 character split across two output chunks", async () => {
    const { output } = await run("printf '\\342\\202'; sleep 0.2; printf '\\254\\n'");
    expect(output.stdout).toBe("€\n");
  });

  it("abort kills the command and its children within a second", async () => {
    const { result, pid, settledAfterMs } = await abortAfterPid("sleep 30 & echo $!; wait");
    started.push(pid);
    expect(result).toMatchObject({ aborted: true, timedOut: false, exitCode: null });
    expect(settledAfterMs).toBeLessThan(1000);
    await vi.waitFor(() => expect(processGone(pid)).toBe(true), { timeout: 1000, interval: 20 });
  });

  it("answers promptly when the command ignores SIGTERM, and kills it with SIGKILL after the grace period", async () => {
    const { result, pid, settledAfterMs } = await abortAfterPid("trap '' TERM; sleep 30 & echo $!; wait", 300);
    started.push(pid);
    expect(result.aborted).toBe(true);
    expect(settledAfterMs).toBeLessThan(1000);
    await vi.waitFor(() => expect(processGone(pid)).toBe(true), { timeout: 2000, interval: 20 });
  });

  it("ends a command that outlives its timeout", async () => {
    const startedAt = Date.now();
    const { result } = await run("sleep 30", { timeoutMs: 100 });
    expect(result).toMatchObject({ timedOut: true, aborted: false, exitCode: null });
    expect(Date.now() - startedAt).toBeLessThan(1500);
  });

  it("does not start a command whose signal is already aborted", async () => {
    const controller = new AbortController();
    controller.abort();
    const { root, result } = await run("touch started", { signal: controller.signal });
    expect(result.aborted).toBe(true);
    expect(existsSync(join(root, "started"))).toBe(false);
  });

  it("returns when the shell exits even if a background child keeps the output open", async () => {
    const { result, output } = await run("sleep 30 & echo $!");
    const pid = Number(output.stdout.trim());
    expect(result.exitCode).toBe(0);
    process.kill(pid, "SIGKILL");
    await vi.waitFor(() => expect(processGone(pid)).toBe(true), { timeout: 1000, interval: 20 });
  });
});

describe("the environment of commands", () => {
  const secretName = "UMBRA_TEST_HOST_SECRET";
  beforeEach(() => {
    process.env[secretName] = "host-secret-value-7f3a";
  });
  afterEach(() => {
    delete process.env[secretName];
  });

  it("does not inherit the host's environment", async () => {
    const { output } = await run("env");
    expect(output.stdout).not.toContain("host-secret-value-7f3a");
    expect(output.stdout).not.toContain(secretName);
  });

  it("has PATH, HOME, TERM=dumb and the agent's git identity, plus the variables asked for", async () => {
    const { output } = await run("env", { env: { EXTRA_SETTING: "yes" } });
    const env = Object.fromEntries(
      output.stdout
        .trim()
        .split("\n")
        .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
    );
    expect(env.PATH).toBeTruthy();
    expect(env.HOME).toBeTruthy();
    expect(env.TERM).toBe("dumb");
    expect(env.GIT_AUTHOR_NAME).toBe("Umbra Agent");
    expect(env.EXTRA_SETTING).toBe("yes");
  });
});

describe("a consumer that falls behind", () => {
  it("pauses the command's output while the consumer's promise is pending, and loses none of it", async () => {
    const executor = createLocalExecutor(await tempDir(), { home: await tempDir("umbra-home-") });
    let pending = 0;
    let mostPending = 0;
    const received = { stdout: 0, stderr: 0 };
    const result = await executor.runCommand("head -c 3000000 /dev/zero | tr '\\0' a; echo done >&2", {
      onOutput: (stream, text) => {
        received[stream] += text.length;
        pending++;
        mostPending = Math.max(mostPending, pending);
        return new Promise<void>((resolve) =>
          setImmediate(() => {
            pending--;
            resolve();
          }),
        );
      },
    });
    expect(result.exitCode).toBe(0);
    expect(received).toEqual({ stdout: 3_000_000, stderr: 5 });
    // Both pipes were paused: at most the one chunk a pipe had already read arrived while another was
    // being consumed (without the pause, the whole 3 MB would arrive while the first chunk waits).
    expect(mostPending).toBeLessThanOrEqual(2);
  });
});
