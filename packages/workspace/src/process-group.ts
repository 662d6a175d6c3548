/**
 * Runs a shell command in its own process group, so that stopping it stops
 * everything it started.
 *
 * Invariants:
 * - The command gets exactly the environment it is given; nothing is
 *   inherited from this process (host secrets stay out).
 * - Abort and timeout send SIGTERM to the whole group, then SIGKILL after
 *   `killGraceMs`; the returned promise settles within `stopSettleMs` of the
 *   stop even when the command ignores SIGTERM.
 * - Output is decoded as UTF-8 with a StringDecoder per stream, so a
 *   character split across two chunks is never mangled.
 * - While the consumer's promise from `onOutput` is pending, both output
 *   pipes are paused: the command blocks on a full pipe instead of this
 *   process buffering its output.
 * - When the shell exits but a background child still holds its output
 *   open, the result is returned after `exitSettleMs` anyway; the child is
 *   left running (an agent may start a server on purpose).
 */
import { readdirSync, readFileSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import { spawnProcess, whenStarted } from "./spawn-host";
import type { CommandResult, RunCommandOptions } from "./types";
import { AGENT_GIT_IDENTITY, WorkspaceOperationError } from "./types";

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * The environment a workspace command starts from: enough to run tools and
 * git, nothing that identifies or authenticates the host.
 */
export function minimalEnvironment(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH || DEFAULT_PATH,
    HOME: home,
    LANG: "C.UTF-8",
    TERM: "dumb",
    PAGER: "cat",
    GIT_PAGER: "cat",
    GIT_TERMINAL_PROMPT: "0",
    GIT_AUTHOR_NAME: AGENT_GIT_IDENTITY.name,
    GIT_AUTHOR_EMAIL: AGENT_GIT_IDENTITY.email,
    GIT_COMMITTER_NAME: AGENT_GIT_IDENTITY.name,
    GIT_COMMITTER_EMAIL: AGENT_GIT_IDENTITY.email,
    ...extra,
  };
}

/** Sends `signal` to every process in the group led by `pgid`; a group that is already gone is not an error. */
export function killProcessGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}

/**
 * True while a process that is not a zombie is in the group led by `pgid`.
 * Zombies matter: an orphan is reaped by whatever init the machine has, which
 * in a container can take seconds, and a zombie cannot be killed anyway. Reads
 * /proc where there is one; elsewhere any group member counts.
 */
export function processGroupAlive(pgid: number): boolean {
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === "EPERM";
    }
  }
  return pids.some((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // Fields after the command name: state, ppid, pgrp, ...
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(pgrp) === pgid && state !== "Z" && state !== "X";
    } catch {
      return false;
    }
  });
}

/**
 * Turns a shell command into the program to start, e.g. a sandbox that runs
 * `sh -c command` inside. Default: `sh -c command` directly.
 */
export type CommandLauncher = (command: string, cwd: string) => { file: string; args: string[] };

const directLauncher: CommandLauncher = (command) => ({ file: "sh", args: ["-c", command] });

export interface ProcessGroupOptions extends RunCommandOptions {
  cwd: string;
  /** How the command is started. Default: `sh -c command`. */
  launcher?: CommandLauncher;
  /** The complete environment of the command. */
  env: Record<string, string>;
  /** Milliseconds between SIGTERM and SIGKILL. Default 2000. */
  killGraceMs?: number;
  /** Milliseconds after a stop before the promise settles regardless. Default 500. */
  stopSettleMs?: number;
  /** Milliseconds to wait for output to close after the shell exits. Default 250. */
  exitSettleMs?: number;
}

type StopReason = "aborted" | "timedOut";

export function runInProcessGroup(command: string, options: ProcessGroupOptions): Promise<CommandResult> {
  const { signal, onOutput, timeoutMs } = options;
  if (signal?.aborted) return Promise.resolve({ exitCode: null, signal: null, timedOut: false, aborted: true });
  const killGraceMs = options.killGraceMs ?? 2000;

  return new Promise((resolve, reject) => {
    const { file, args } = (options.launcher ?? directLauncher)(command, options.cwd);
    const child = spawnProcess(file, args, {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const stdout = child.stdout!;
    const stderr = child.stderr!;
    const decoders = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
    const timers: NodeJS.Timeout[] = [];
    let stopReason: StopReason | null = null;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    let settled = false;

    let waiting = 0;
    // Once the shell has exited, output still in the pipes is read before the result is returned;
    // a background child that keeps them open is given `exitSettleMs`, counted while nothing waits on the consumer.
    const settleAfterExit = () => {
      const timer = setTimeout(() => {
        if (waiting === 0) finish();
      }, options.exitSettleMs ?? 250);
      timers.push(timer);
    };
    const emit = (stream: "stdout" | "stderr", text: string) => {
      if (text.length === 0 || settled) return;
      const ready = onOutput?.(stream, text);
      if (!ready) return;
      waiting++;
      stdout.pause();
      stderr.pause();
      const resume = () => {
        if (--waiting > 0 || settled) return;
        stdout.resume();
        stderr.resume();
        if (exit && !stopReason) settleAfterExit();
      };
      ready.then(resume, resume);
    };
    stdout.on("data", (chunk: Buffer) => emit("stdout", decoders.stdout.write(chunk)));
    stderr.on("data", (chunk: Buffer) => emit("stderr", decoders.stderr.write(chunk)));

    const finish = () => {
      if (settled) return;
      emit("stdout", decoders.stdout.end());
      emit("stderr", decoders.stderr.end());
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      stdout.destroy();
      stderr.destroy();
      resolve({
        exitCode: exit?.code ?? null,
        signal: exit?.signal ?? (stopReason && !exit ? "SIGTERM" : null),
        timedOut: stopReason === "timedOut",
        aborted: stopReason === "aborted",
      });
    };

    const stop = (reason: StopReason) => {
      if (settled || stopReason) return;
      stopReason = reason;
      // A stop asked while the process is still being started reaches it once it has started.
      whenStarted(child, (pgid) => {
        killProcessGroup(pgid, "SIGTERM");
        // Not cleared by finish(): the group must die even after the caller has its answer.
        const killTimer = setTimeout(() => killProcessGroup(pgid, "SIGKILL"), killGraceMs);
        // Once the output has closed and the group is empty, there is nothing left to kill;
        // dropping the timer lets a stopping process exit without waiting out the grace period.
        child.once("close", () => {
          if (!processGroupAlive(pgid)) clearTimeout(killTimer);
        });
      });
      if (exit) finish();
      else timers.push(setTimeout(finish, options.stopSettleMs ?? 500));
    };
    const onAbort = () => stop("aborted");

    child.on("error", (error) => {
      if (settled) return;
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      reject(new WorkspaceOperationError("INVALID", `cannot start command: ${error.message}`, { cause: error }));
    });
    child.on("exit", (code, exitSignal) => {
      exit = { code, signal: exitSignal };
      if (stopReason) finish();
      else settleAfterExit();
    });
    child.on("close", finish);

    signal?.addEventListener("abort", onAbort, { once: true });
    if (timeoutMs !== undefined) timers.push(setTimeout(() => stop("timedOut"), timeoutMs));
  });
}
