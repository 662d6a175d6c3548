/**
 * Starting one sandboxed sidecar and waiting until it listens.
 *
 * Invariants:
 * - The sidecar's environment is built from nothing: PATH, HOME, LANG and the
 *   SIDECAR_* variables. No host secret (API keys, DATABASE_URL, ...) enters.
 * - The sandbox runs detached in its own process group and is unref'd, so the
 *   server can exit (or crash) without taking it down.
 * - stderr goes to a log file in the sandbox directory; stdout is read only
 *   for the one "listening" line, then let go.
 * - `onStarted` hears the sandbox's leader pid as soon as it is known, before
 *   the sidecar listens, and launching waits for it: a server that dies
 *   while the sidecar starts leaves a sandbox its successor can find.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { z } from "zod";
import type { VmMount } from "../types";
import { bubblewrapArgs, INFO_FD } from "./bubblewrap";

const ListeningLine = z.object({ event: z.literal("listening"), port: z.number().int().positive() });
const BubblewrapInfo = z.object({ "child-pid": z.number().int().positive() });

export interface LaunchSpec {
  workspace: string;
  /** HOME of the sidecar process. */
  home: string;
  /** TMPDIR of the sidecar process, when it should not be the system's. */
  tmpDir?: string;
  token: string;
  bundlePath: string;
  nodePath: string;
  /** Host directories bound into the sandbox (under bubblewrap; unsandboxed they are visible at their own path). */
  mounts?: VmMount[];
  /** Extra arguments that mark the sidecar's command line. */
  markers: string[];
  bubblewrap: boolean;
  /** File descriptor of the log file that receives stderr. */
  logFd: number;
  startTimeoutMs: number;
  /** Called once the leader pid (see LaunchedSandbox.pid) and the launcher's pid are known. */
  onStarted?(pid: number, launcherPid: number): Promise<void>;
}

export interface LaunchedSandbox {
  child: ChildProcess;
  /** Leader of the sandbox's process group (see SandboxRecord.pid). */
  pid: number;
  port: number;
}

function sidecarEnv(spec: LaunchSpec): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: spec.home,
    LANG: "C.UTF-8",
    ...(spec.tmpDir ? { TMPDIR: spec.tmpDir } : {}),
    SIDECAR_WORKSPACE: spec.workspace,
    SIDECAR_TOKEN: spec.token,
    SIDECAR_HOST: "127.0.0.1",
    SIDECAR_PORT: "0",
  };
}

function spawnSandbox(spec: LaunchSpec): ChildProcess {
  const sidecar = [spec.nodePath, spec.bundlePath, ...spec.markers];
  if (!spec.bubblewrap) {
    return spawn(sidecar[0]!, sidecar.slice(1), {
      cwd: spec.workspace,
      env: sidecarEnv(spec),
      detached: true,
      stdio: ["ignore", "pipe", spec.logFd],
    });
  }
  const args = [...bubblewrapArgs(spec), "--", ...sidecar];
  return spawn("bwrap", args, {
    env: sidecarEnv(spec),
    detached: true,
    stdio: ["ignore", "pipe", spec.logFd, "pipe"],
  });
}

function firstMatch<T>(stream: Readable, parse: (text: string) => T | undefined, lineWise: boolean): Promise<T> {
  return new Promise((resolve, reject) => {
    if (lineWise) {
      const lines = createInterface({ input: stream });
      lines.on("line", (line) => {
        const value = parse(line);
        if (value !== undefined) {
          resolve(value);
          lines.close();
        }
      });
      lines.on("close", () => reject(new Error("stream ended")));
      return;
    }
    let text = "";
    stream.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8");
      const value = parse(text);
      if (value !== undefined) resolve(value);
    });
    stream.on("end", () => reject(new Error("stream ended")));
  });
}

function parseWith<T>(schema: z.ZodType<T>): (text: string) => T | undefined {
  return (text) => {
    try {
      const parsed = schema.safeParse(JSON.parse(text));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  };
}

function killQuietly(pid: number | undefined, group: boolean): void {
  if (pid === undefined) return;
  try {
    process.kill(group ? -pid : pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Starts the sandbox; resolves once the sidecar listens, rejects (after killing it) if it does not. */
export async function launchSandbox(spec: LaunchSpec): Promise<LaunchedSandbox> {
  const child = spawnSandbox(spec);
  const streams = child.stdio.filter((s): s is Readable => s != null && "read" in s);
  const exited = new Promise<never>((_, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      reject(new Error(`sandbox exited (${signal ?? `code ${code}`}) before listening`)),
    );
  });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`sidecar did not listen within ${spec.startTimeoutMs} ms`)),
      spec.startTimeoutMs,
    );
  });
  // Under bubblewrap the sidecar runs below the sandbox's own init, in a session of its own;
  // that init's host pid (from --info-fd) is what to signal later.
  let leader: number | undefined = spec.bubblewrap ? undefined : child.pid;
  const leaderKnown = spec.bubblewrap
    ? firstMatch(child.stdio[INFO_FD] as Readable, parseWith(BubblewrapInfo), false).then((info) => {
        leader = info["child-pid"];
        return leader;
      })
    : Promise.resolve(child.pid!);
  const started = leaderKnown.then(async (pid) => {
    await spec.onStarted?.(pid, child.pid!);
    return pid;
  });
  const ready = Promise.all([firstMatch(child.stdout!, parseWith(ListeningLine), true), started]);
  try {
    const [listening, pid] = await Promise.race([ready, exited, timedOut]);
    return { child, pid, port: listening.port };
  } catch (error) {
    killQuietly(leader, true);
    killQuietly(leader, false);
    killQuietly(child.pid, true);
    throw error;
  } finally {
    clearTimeout(timer);
    exited.catch(() => {});
    ready.catch(() => {});
    for (const stream of streams) stream.destroy();
    child.removeAllListeners("exit");
    child.removeAllListeners("error");
    child.on("error", () => {});
    child.unref();
  }
}
