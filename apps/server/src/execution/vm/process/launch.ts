/**
 * Starting one sandboxed sidecar and waiting until it listens.
 *
 * Under bubblewrap, for a root server, the chain is: `unshare --mount` (a
 * private mount namespace for the launcher) → `sh` (writes its own pid into
 * the sandbox's cgroups, so that nothing of the sandbox ever runs outside
 * them; stages the directories to bind under STAGE_DIR, where the sandbox's
 * uid can reach them) → `setpriv` (drops to the sandbox's unprivileged host
 * uid, no groups, no capabilities) → `bwrap` → the sidecar. All exec in
 * place: one pid. A server that is not root skips the namespace, the staging
 * and setpriv.
 *
 * Invariants:
 * - The sidecar's environment is built from nothing: PATH, HOME, LANG and the
 *   SIDECAR_* variables. No host secret (API keys, DATABASE_URL, ...) enters,
 *   and neither does the token: it is written once into a pipe (TOKEN_FD)
 *   the sidecar reads and closes, so no process's environment or command
 *   line, and no file, ever holds it.
 * - The sandbox runs detached in its own process group and is unref'd, so the
 *   server can exit (or crash) without taking it down.
 * - stderr goes to a log file in the sandbox directory; stdout is read only
 *   for the one "listening" line, then let go.
 * - `onSpawned` hears the launcher's pid the moment it is spawned, and
 *   `onStarted` the sandbox's leader pid as soon as it is known, before the
 *   sidecar listens; launching waits for both, in that order: a server that
 *   dies at any point of the start leaves a sandbox (or a launcher) its
 *   successor can find and end.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { z } from "zod";
import { INFO_FD, INSIDE, STAGE_DIR, TOKEN_FD } from "./bubblewrap";

const ListeningLine = z.object({ event: z.literal("listening"), socket: z.string().startsWith("/") });
const BubblewrapInfo = z.object({ "child-pid": z.number().int().positive() });
/** Joins every cgroup.procs file given before `--`, then becomes the rest of the command line. */
const JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"';
/**
 * JOIN_CGROUPS, then: a tmpfs on the stage directory (in the launcher's private mount namespace
 * only), each path given before the second `--` bound at `<stage>/<index>`, then the rest.
 */
const JOIN_AND_STAGE = [
  'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift',
  'stage=$1; shift; mount -t tmpfs -o mode=0755,size=1m umbra-stage "$stage" || exit 98; i=0',
  'while [ "$1" != -- ]; do if [ -d "$1" ]; then mkdir "$stage/$i"; else : > "$stage/$i"; fi',
  'mount --bind "$1" "$stage/$i" || exit 98; i=$((i + 1)); shift; done; shift',
  'exec "$@"',
].join("\n");

export interface ConfinedLaunch {
  /** bubblewrap's arguments up to the command (bubblewrap.ts). */
  bubblewrapArgs: string[];
  /** Paths staged under STAGE_DIR (root server only). */
  bindSources: string[];
  /** The sandbox's unprivileged host uid and gid; null keeps the server's own (it is not root). */
  hostUid: number | null;
  /** cgroup.procs files the sandbox joins before it starts. */
  cgroupProcs: string[];
  /** The compiled seccomp filter's file, or null. */
  seccompFile: string | null;
  setprivPath: string;
  unsharePath: string;
}

export interface LaunchSpec {
  /** The sidecar's environment besides PATH, LANG and the token descriptor. */
  env: Record<string, string>;
  token: string;
  bundlePath: string;
  nodePath: string;
  /** Extra arguments that mark the sidecar's command line. */
  markers: string[];
  /** Working directory of an unconfined sidecar. */
  cwd: string;
  /** Under bubblewrap, how; null runs the sidecar as a plain process. */
  confined: ConfinedLaunch | null;
  /** File descriptor of the log file that receives stderr. */
  logFd: number;
  startTimeoutMs: number;
  /** Called once the launcher is spawned, with its pid (the leader of its process group until the sandbox's is known). */
  onSpawned?(launcherPid: number): Promise<void>;
  /** Called once the leader pid (see LaunchedSandbox.pid) and the launcher's pid are known, after onSpawned. */
  onStarted?(pid: number, launcherPid: number): Promise<void>;
}

export interface LaunchedSandbox {
  child: ChildProcess;
  /** Leader of the sandbox's process group (see SandboxRecord.pid). */
  pid: number;
  /** The socket the sidecar listens on, as the sidecar named it. */
  socket: string;
}

/**
 * The sidecar's command line: node, its bundle where the sidecar sees it (for
 * a confined one, where bubblewrap binds it), then the markers. The record's
 * markers name the bundle the same way (sidecarBundleArg).
 */
function sidecarCommand(spec: LaunchSpec): string[] {
  return [spec.nodePath, sidecarBundleArg(spec.bundlePath, spec.confined !== null), ...spec.markers];
}

/** How the sidecar's command line names its bundle: at its host path, or inside a confined sandbox at INSIDE.sidecar. */
export function sidecarBundleArg(bundlePath: string, confined: boolean): string {
  return confined ? INSIDE.sidecar : bundlePath;
}

function sidecarEnv(spec: LaunchSpec): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    LANG: "C.UTF-8",
    ...spec.env,
    SIDECAR_TOKEN_FD: String(TOKEN_FD),
  };
}

function confinedCommand(spec: LaunchSpec, confined: ConfinedLaunch): { file: string; args: string[] } {
  const sidecar = sidecarCommand(spec);
  const bwrap = ["bwrap", ...confined.bubblewrapArgs, "--", ...sidecar];
  if (confined.hostUid === null) {
    return { file: "/bin/sh", args: ["-c", JOIN_CGROUPS, "umbra-launch", ...confined.cgroupProcs, "--", ...bwrap] };
  }
  mkdirSync(STAGE_DIR, { recursive: true, mode: 0o755 });
  const drop = [
    confined.setprivPath,
    `--reuid=${confined.hostUid}`,
    `--regid=${confined.hostUid}`,
    "--clear-groups",
    "--inh-caps=-all",
    "--",
  ];
  return {
    file: confined.unsharePath,
    args: [
      "--mount",
      "--propagation",
      "private",
      "--",
      "/bin/sh",
      "-c",
      JOIN_AND_STAGE,
      "umbra-launch",
      ...confined.cgroupProcs,
      "--",
      STAGE_DIR,
      ...confined.bindSources,
      "--",
      ...drop,
      ...bwrap,
    ],
  };
}

function spawnSandbox(spec: LaunchSpec): ChildProcess {
  const env = sidecarEnv(spec);
  if (!spec.confined) {
    const sidecar = sidecarCommand(spec);
    return spawn(sidecar[0]!, sidecar.slice(1), {
      cwd: spec.cwd,
      env,
      detached: true,
      stdio: ["ignore", "pipe", spec.logFd, "ignore", "pipe"],
    });
  }
  const { file, args } = confinedCommand(spec, spec.confined);
  // Descriptor SECCOMP_FD (5): bubblewrap reads the filter from it.
  const seccomp = spec.confined.seccompFile ? openSync(spec.confined.seccompFile, "r") : null;
  try {
    return spawn(file, args, {
      env,
      detached: true,
      stdio: ["ignore", "pipe", spec.logFd, "pipe", "pipe", seccomp ?? "ignore"],
    });
  } finally {
    if (seccomp !== null) closeSync(seccomp);
  }
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

/** Hands the token over through its pipe, once; the pipe is closed right after. */
function sendToken(child: ChildProcess, token: string): void {
  const pipe = child.stdio[TOKEN_FD] as Writable | null;
  if (!pipe) return;
  pipe.on("error", () => {});
  pipe.end(token);
}

/** Starts the sandbox; resolves once the sidecar listens, rejects (after killing it) if it does not. */
export async function launchSandbox(spec: LaunchSpec): Promise<LaunchedSandbox> {
  const child = spawnSandbox(spec);
  sendToken(child, spec.token);
  const streams = child.stdio.filter((s): s is Readable => s != null && "read" in s);
  const exited = new Promise<never>((_, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      reject(
        new Error(
          code === 97
            ? "the sandbox could not join its cgroups"
            : code === 98
              ? "the sandbox's directories could not be staged for it"
              : `sandbox exited (${signal ?? `code ${code}`}) before listening`,
        ),
      ),
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
  let leader: number | undefined = spec.confined ? undefined : child.pid;
  const leaderKnown = spec.confined
    ? firstMatch(child.stdio[INFO_FD] as Readable, parseWith(BubblewrapInfo), false).then((info) => {
        leader = info["child-pid"];
        return leader;
      })
    : Promise.resolve(child.pid!);
  const spawned = child.pid === undefined ? Promise.resolve() : spec.onSpawned?.(child.pid);
  const started = Promise.all([leaderKnown, spawned]).then(async ([pid]) => {
    await spec.onStarted?.(pid, child.pid!);
    return pid;
  });
  const ready = Promise.all([firstMatch(child.stdout!, parseWith(ListeningLine), true), started]);
  try {
    const [listening, pid] = await Promise.race([ready, exited, timedOut]);
    return { child, pid, socket: listening.socket };
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
