/**
 * Test fixtures for the sidecar: the real bundled sidecar started as a child
 * process on an ephemeral port, temporary directories, git repositories and
 * a check that a process is really gone.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { SidecarClient } from "@repo/workspace";
import { expect } from "vitest";
import { ensureSidecarBundle } from "../build";

const created: string[] = [];

export async function tempDir(prefix = "umbra-sidecar-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(created.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}

export { initRepo, processGone, TEST_GIT_ENV, testGit } from "../../../test/support/workspace-fixtures";

export interface RunningSidecar {
  client: SidecarClient;
  endpoint: string;
  token: string;
  workspace: string;
  pid: number;
  /** Everything the sidecar wrote to stdout and stderr so far. */
  output(): string;
  /** SIGTERM, then waits for the process to exit. */
  stop(): Promise<void>;
}

function waitForListening(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (line) => {
      const message = JSON.parse(line) as { event: string; port: number };
      expect(message.event).toBe("listening");
      resolve(message.port);
    });
    child.once("exit", (code) => reject(new Error(`sidecar exited with ${code} before listening`)));
  });
}

/** Starts the real bundled sidecar on an ephemeral port with a fresh token; `env` adds to or replaces its variables. */
export async function startSidecar(workspace: string, env: Record<string, string> = {}): Promise<RunningSidecar> {
  const bundle = await ensureSidecarBundle();
  const token = randomBytes(24).toString("hex");
  const child = spawn(process.execPath, [bundle], {
    // TMPDIR keeps the command home the sidecar creates inside a directory the tests remove.
    env: {
      PATH: process.env.PATH,
      TMPDIR: await tempDir("umbra-sidecar-tmp-"),
      SIDECAR_WORKSPACE: workspace,
      SIDECAR_TOKEN: token,
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  child.stderr.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const port = await waitForListening(child);
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    client: new SidecarClient({ endpoint, token }),
    endpoint,
    token,
    workspace,
    pid: child.pid!,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
