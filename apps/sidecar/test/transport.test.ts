/**
 * How a sandboxed sidecar is reached and given its token: it listens on a
 * unix socket (SIDECAR_SOCKET) that only its owner can open, and reads the
 * token from an inherited pipe (SIDECAR_TOKEN_FD), so the token is in no
 * environment — /proc/<pid>/environ is what another process of the same user
 * could read.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Writable } from "node:stream";
import { SidecarClient, SidecarError } from "@repo/workspace";
import { afterEach, describe, expect, it } from "vitest";
import { ensureSidecarBundle } from "../build";
import { processGone, removeTempDirs, tempDir } from "./helpers";

const children: ChildProcess[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
    }
    expect(processGone(child.pid!)).toBe(true);
  }
  await removeTempDirs();
});

async function startOnSocket(tokenOnFd: string) {
  const bundle = await ensureSidecarBundle();
  const dir = await tempDir();
  const socket = join(dir, "sidecar.sock");
  const child = spawn(process.execPath, [bundle], {
    env: {
      PATH: process.env.PATH,
      TMPDIR: await tempDir("umbra-sidecar-tmp-"),
      SIDECAR_WORKSPACE: join(dir, "workspace"),
      SIDECAR_SOCKET: socket,
      SIDECAR_TOKEN_FD: "3",
    },
    stdio: ["ignore", "pipe", "pipe", "pipe"],
  });
  children.push(child);
  (child.stdio[3] as Writable).end(tokenOnFd);
  const listening = await new Promise<unknown>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", (line) => resolve(JSON.parse(line)));
    child.once("exit", (code) => reject(new Error(`sidecar exited with ${code}`)));
  });
  return { child, socket, listening };
}

describe("the sidecar on a unix socket with its token from a pipe", () => {
  it("announces the socket, answers the token it read and nothing else, and keeps the token out of its environment", async () => {
    const token = randomBytes(24).toString("hex");
    const { child, socket, listening } = await startOnSocket(token);
    expect(listening).toEqual({ event: "listening", socket });
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const client = new SidecarClient({ endpoint: `unix:${socket}`, token });
    expect(await client.health()).toMatchObject({ ok: true });
    const result = await client.runCommand("env");
    expect(result.exitCode).toBe(0);
    const wrong = new SidecarClient({ endpoint: `unix:${socket}`, token: "x".repeat(48) });
    await expect(wrong.health()).rejects.toMatchObject({ status: 401, code: "UNAUTHORIZED" });
    expect(readFileSync(`/proc/${child.pid}/environ`, "utf8")).not.toContain(token);
  });

  it("refuses to start with a token shorter than 16 characters", async () => {
    await expect(startOnSocket("short")).rejects.toThrow(/exited with 2/);
  });

  it("reports a sidecar that does not exist as unreachable", async () => {
    const dir = await tempDir();
    const client = new SidecarClient({ endpoint: `unix:${join(dir, "none.sock")}`, token: "x".repeat(32) });
    const error = await client.health().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SidecarError);
    expect(error).toMatchObject({ status: 0, code: "UNREACHABLE" });
  });
});
