import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { processGone, type RunningSidecar, removeTempDirs, startSidecar, tempDir } from "./helpers";

let sidecar: RunningSidecar;
const commandPids: number[] = [];

beforeAll(async () => {
  sidecar = await startSidecar(await tempDir());
});

afterAll(async () => {
  await sidecar.stop();
  expect(processGone(sidecar.pid)).toBe(true);
  for (const pid of commandPids) expect(processGone(pid), `command process ${pid} leaked`).toBe(true);
  expect(sidecar.output()).not.toContain(sidecar.token);
  await removeTempDirs();
});

describe("running commands through the sidecar", () => {
  it("streams stdout and stderr and reports the exit code", async () => {
    const chunks: Array<[string, string]> = [];
    const result = await sidecar.client.runCommand("echo out; echo err >&2; exit 7", {
      onOutput: (stream, text) => {
        chunks.push([stream, text]);
      },
    });
    expect(result).toEqual({ exitCode: 7, signal: null, timedOut: false, aborted: false });
    expect(
      chunks
        .filter(([s]) => s === "stdout")
        .map(([, t]) => t)
        .join(""),
    ).toBe("out\n");
    expect(
      chunks
        .filter(([s]) => s === "stderr")
        .map(([, t]) => t)
        .join(""),
    ).toBe("err\n");
  });

  it("runs in the workspace with the variables asked for and without the sidecar's token", async () => {
    let output = "";
    await sidecar.client.runCommand("pwd; echo $EXTRA; env", {
      env: { EXTRA: "extra-value" },
      onOutput: (_stream, text) => {
        output += text;
      },
    });
    expect(output.split("\n").slice(0, 2)).toEqual([sidecar.workspace, "extra-value"]);
    expect(output).not.toContain(sidecar.token);
    expect(output).not.toContain("SIDECAR_TOKEN");
  });

  it("cancelling the request kills the command's whole process group", async () => {
    const controller = new AbortController();
    let pid = 0;
    let abortedAt = 0;
    const result = await sidecar.client.runCommand("sleep 30 & echo $!; wait", {
      signal: controller.signal,
      onOutput: (_stream, text) => {
        const match = /^(\d+)\n/.exec(text);
        if (match && !pid) {
          pid = Number(match[1]);
          commandPids.push(pid);
          abortedAt = Date.now();
          controller.abort();
        }
      },
    });
    expect(result.aborted).toBe(true);
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    await vi.waitFor(() => expect(processGone(pid)).toBe(true), { timeout: 2000, interval: 20 });
  });

  it("ends a command that outlives its timeout", async () => {
    const result = await sidecar.client.runCommand("sleep 30", { timeoutMs: 100 });
    expect(result).toMatchObject({ timedOut: true, aborted: false, exitCode: null });
  });

  it("refuses an exec request without a command", async () => {
    const response = await fetch(`${sidecar.endpoint}/exec`, {
      method: "POST",
      headers: { authorization: `Bearer ${sidecar.token}` },
      body: JSON.stringify({ command: "" }),
    });
    expect(response.status).toBe(400);
  });

  it("stopping the sidecar stops the commands it is running", async () => {
    const other = await startSidecar(await tempDir());
    let pid = 0;
    const started = new Promise<void>((resolve) => {
      void other.client
        .runCommand("sleep 30 & echo $!; wait", {
          onOutput: (_stream, text) => {
            pid = Number(text.trim());
            commandPids.push(pid);
            resolve();
          },
        })
        .catch(() => undefined);
    });
    await started;
    await other.stop();
    await vi.waitFor(() => expect(processGone(pid)).toBe(true), { timeout: 3000, interval: 20 });
  });
});
