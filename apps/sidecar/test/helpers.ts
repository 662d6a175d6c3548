/**
 * Test fixtures for the sidecar: the real bundled sidecar started as a child
 * process on an ephemeral port, temporary directories, git repositories and
 * a check that a process is really gone.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { git, SidecarClient } from "@repo/workspace";
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

export const TEST_GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: "Test Author",
  GIT_AUTHOR_EMAIL: "author@example.test",
  GIT_COMMITTER_NAME: "Test Author",
  GIT_COMMITTER_EMAIL: "author@example.test",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
};

export function testGit(cwd: string, args: string[]): Promise<string> {
  return git(args, { cwd, env: TEST_GIT_ENV });
}

/** A repository on `branch` with one commit holding `files`. */
export async function initRepo(dir: string, files: Record<string, string>, branch = "main"): Promise<string> {
  await testGit(dir, ["init", "-q", "-b", branch]);
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  await testGit(dir, ["add", "-A"]);
  await testGit(dir, ["commit", "-q", "-m", "initial"]);
  return testGit(dir, ["rev-parse", "HEAD"]);
}

/** True when `pid` no longer runs: no /proc entry, or only a zombie waiting to be reaped. */
export function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.charAt(stat.lastIndexOf(")") + 2);
    return state === "Z" || state === "X";
  } catch {
    return !existsSync(`/proc/${pid}`);
  }
}

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

/** Starts the real bundled sidecar on an ephemeral port with a fresh token. */
export async function startSidecar(workspace: string): Promise<RunningSidecar> {
  const bundle = await ensureSidecarBundle();
  const token = randomBytes(24).toString("hex");
  const child = spawn(process.execPath, [bundle], {
    // TMPDIR keeps the command home the sidecar creates inside a directory the tests remove.
    env: {
      PATH: process.env.PATH,
      TMPDIR: await tempDir("umbra-sidecar-tmp-"),
      SIDECAR_WORKSPACE: workspace,
      SIDECAR_TOKEN: token,
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
