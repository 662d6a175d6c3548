/**
 * The one runner for the git command line: the server's repository store,
 * the local executor and the sidecar all start git through it.
 *
 * Invariants:
 * - Git never prompts: GIT_TERMINAL_PROMPT=0 always, and unless the caller's
 *   environment names its own, askpass helpers that answer nothing and ssh in
 *   batch mode. An unreachable or private repository fails fast.
 * - Every run is bounded: `timeoutMs` kills git (exit code null, `timedOut`),
 *   and stdout kept in memory is capped at `maxOutputBytes` (git is killed and
 *   the run fails with `outputLimited`). Large transfers stream to `stdout`
 *   instead of memory.
 * - `runGit` reports how git ended and throws only when it cannot start;
 *   `git` and `gitBuffer` turn a non-zero exit into a GitError carrying the
 *   arguments, exit code and stderr, so callers never parse half-failed output.
 * - Helpers that look at a workspace never climb above it: a workspace that
 *   is not a repository must not be mistaken for a repository it sits in.
 * - A process that sets a git launcher (the sidecar) starts every git through
 *   it: a repository's own configuration (hooks, fsmonitor, filters) is
 *   controlled by whoever can write the workspace, so git must run where they
 *   already are, never with more rights than theirs.
 */
import { spawn } from "node:child_process";
import { dirname, resolve } from "node:path";
import type { Writable } from "node:stream";

/** Most stderr kept for an error message, bytes (the end is kept: git says what failed last). */
const STDERR_LIMIT = 64 * 1024;
/** Default cap on stdout kept in memory, bytes. */
export const DEFAULT_GIT_OUTPUT_LIMIT = 64 * 1024 * 1024;

export class GitError extends Error {
  /** git was killed after its `timeoutMs`. */
  readonly timedOut: boolean;
  /** git was killed for writing more than `maxOutputBytes`. */
  readonly outputLimited: boolean;

  constructor(
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    options?: { cause?: unknown; timedOut?: boolean; outputLimited?: boolean },
  ) {
    const why = options?.timedOut
      ? "timed out"
      : options?.outputLimited
        ? "produced more output than allowed"
        : `failed${exitCode === null ? "" : ` (exit ${exitCode})`}`;
    super(`git ${args.join(" ")} ${why}: ${stderr.trim()}`, options);
    this.name = "GitError";
    this.timedOut = options?.timedOut ?? false;
    this.outputLimited = options?.outputLimited ?? false;
  }

  /** What git said went wrong, without its `fatal:`/`error:` prefixes: the stderr line worth showing a user. */
  get reason(): string {
    const line = this.stderr
      .split("\n")
      .map((l) => l.replace(/^(fatal|error):\s*/, "").trim())
      .find((l) => l.length > 0);
    if (this.timedOut) return `timed out${line ? ` (${line})` : ""}`;
    return line ?? `exit code ${this.exitCode}`;
  }
}

export interface GitRunOptions {
  cwd: string;
  /** Written to git's stdin. */
  input?: string | Buffer;
  /** The environment of the git process. Default: this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Kill git after this long, in ms. Default: no limit. */
  timeoutMs?: number;
  /** Most stdout bytes kept in memory; more kills git and fails the run. Default DEFAULT_GIT_OUTPUT_LIMIT. */
  maxOutputBytes?: number;
  /** Stream stdout here instead of keeping it (the result's stdout is then empty). */
  stdout?: Writable;
}

export interface GitRunResult {
  exitCode: number | null;
  stdout: Buffer;
  stderr: string;
  timedOut: boolean;
  outputLimited: boolean;
}

/** How git is started; `args` are git's own arguments. */
export type GitLauncher = (args: readonly string[], cwd: string) => { file: string; args: string[] };

let gitLauncher: GitLauncher = (args) => ({ file: "git", args: [...args] });

/** Starts every later git run of this process through `launcher` (set once, at start-up). */
export function setGitLauncher(launcher: GitLauncher): void {
  gitLauncher = launcher;
}

/** The no-prompt settings, under what the caller's environment already sets. */
function gitEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return {
    GIT_ASKPASS: "/bin/false",
    SSH_ASKPASS: "/bin/false",
    GIT_SSH_COMMAND: "ssh -o BatchMode=yes -o ConnectTimeout=15",
    ...env,
    GIT_TERMINAL_PROMPT: "0",
  };
}

/** Runs git and reports how it ended; only a failure to start it at all throws. */
export function runGit(args: readonly string[], options: GitRunOptions): Promise<GitRunResult> {
  const limit = options.maxOutputBytes ?? DEFAULT_GIT_OUTPUT_LIMIT;
  return new Promise((resolvePromise, reject) => {
    // In a process group of its own, so a limit ends git's helpers (ssh, remote-https, hooks) with it.
    const launch = gitLauncher(args, options.cwd);
    const child = spawn(launch.file, launch.args, {
      cwd: options.cwd,
      env: gitEnv(options.env ?? process.env),
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    const kill = () => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    };
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = "";
    let timedOut = false;
    let outputLimited = false;
    const timer =
      options.timeoutMs === undefined
        ? null
        : setTimeout(() => {
            timedOut = true;
            kill();
          }, options.timeoutMs);
    if (options.stdout) {
      child.stdout.pipe(options.stdout, { end: false });
    } else {
      child.stdout.on("data", (chunk: Buffer) => {
        stdoutBytes += chunk.length;
        if (stdoutBytes > limit) {
          outputLimited = true;
          kill();
          return;
        }
        stdout.push(chunk);
      });
    }
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-STDERR_LIMIT);
    });
    child.on("error", (error) => {
      if (timer) clearTimeout(timer);
      reject(new GitError(args, null, error.message, { cause: error }));
    });
    child.on("close", (exitCode) => {
      if (timer) clearTimeout(timer);
      if (options.stdout) child.stdout.unpipe(options.stdout);
      resolvePromise({
        exitCode: timedOut || outputLimited ? null : exitCode,
        stdout: Buffer.concat(stdout),
        stderr,
        timedOut,
        outputLimited,
      });
    });
    // git may exit before reading its input (e.g. on a bad argument); that is reported by its exit code.
    child.stdin.on("error", () => {});
    child.stdin.end(options.input);
  });
}

/** Runs git and returns its stdout as bytes; throws GitError unless it exits 0. */
export async function gitBuffer(args: readonly string[], options: GitRunOptions): Promise<Buffer> {
  const result = await runGit(args, options);
  if (result.exitCode !== 0) {
    throw new GitError(args, result.exitCode, result.stderr, {
      timedOut: result.timedOut,
      outputLimited: result.outputLimited,
    });
  }
  return result.stdout;
}

/** Runs git and returns its stdout without the trailing newline; throws GitError unless it exits 0. */
export async function git(args: readonly string[], options: GitRunOptions): Promise<string> {
  return (await gitBuffer(args, options)).toString("utf8").replace(/\n$/, "");
}

export interface HeadInfo {
  /** The checked-out commit, or null when there is no repository or no commit yet. */
  head: string | null;
  /** The checked-out branch, or null when there is no repository or HEAD is detached. */
  branch: string | null;
}

/**
 * Variables that pin git to the workspace at `root`: a ceiling so that git
 * never discovers a repository above it, and `safe.directory` for it, because
 * in a container the mounted workspace is often owned by another uid than the
 * sidecar's and git would refuse it as "dubious ownership".
 */
export function workspaceGitVariables(root: string): Record<string, string> {
  const absolute = resolve(root);
  return {
    GIT_CEILING_DIRECTORIES: dirname(absolute),
    GIT_CONFIG_COUNT: "1",
    GIT_CONFIG_KEY_0: "safe.directory",
    GIT_CONFIG_VALUE_0: absolute,
  };
}

/** `env` plus workspaceGitVariables(root); an explicit GIT_CONFIG_COUNT in `env` wins. */
export function confinedGitEnv(root: string, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const pinned = workspaceGitVariables(root);
  if (env.GIT_CONFIG_COUNT) return { ...env, GIT_CEILING_DIRECTORIES: pinned.GIT_CEILING_DIRECTORIES };
  return { ...env, ...pinned };
}

/** What `cwd` has checked out; never throws for a directory that is not a repository. */
export async function readHead(cwd: string, baseEnv?: NodeJS.ProcessEnv): Promise<HeadInfo> {
  const env = confinedGitEnv(cwd, baseEnv);
  const [head, branch] = await Promise.all([
    runGit(["rev-parse", "--verify", "-q", "HEAD^{commit}"], { cwd, env }),
    runGit(["symbolic-ref", "--short", "-q", "HEAD"], { cwd, env }),
  ]);
  const text = (result: GitRunResult) => (result.exitCode === 0 ? result.stdout.toString("utf8").trim() || null : null);
  return { head: text(head), branch: text(branch) };
}

/** True when `cwd` has no staged, unstaged or untracked (non-ignored) changes. */
export async function isWorkingTreeClean(cwd: string, env?: NodeJS.ProcessEnv): Promise<boolean> {
  const status = await git(["status", "--porcelain", "--untracked-files=all"], { cwd, env: confinedGitEnv(cwd, env) });
  return status.length === 0;
}

/** True when `name` is a valid branch name for git. */
export async function isValidBranchName(name: string): Promise<boolean> {
  if (name.startsWith("-")) return false;
  const result = await runGit(["check-ref-format", `refs/heads/${name}`], { cwd: "/" });
  return result.exitCode === 0;
}
