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
 *   the run fails with `outputLimited`). Large transfers stream: `stdin` feeds
 *   git from a stream, `stdout` (or gitOutputStream) takes its output to one,
 *   so nothing of a transfer is ever held whole in this process's memory.
 * - An aborted `signal` kills git; so does a failing `stdin` stream.
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
import { dirname, resolve } from "node:path";
import { PassThrough, type Readable, type Writable } from "node:stream";
import { type FeedResult, type StdinFeed, spawnProcess, whenStarted } from "./spawn-host";

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
    options?: { cause?: unknown; timedOut?: boolean; outputLimited?: boolean; aborted?: boolean },
  ) {
    const why = options?.timedOut
      ? "timed out"
      : options?.outputLimited
        ? "produced more output than allowed"
        : options?.aborted
          ? "was stopped"
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
  /**
   * Streamed to git's stdin instead of `input`, with backpressure. A failing
   * stream kills git (the run fails with `inputError`); what git did not read
   * is drained when git exits (destroy the stream to stop its producer).
   */
  stdin?: Readable;
  /**
   * Fed to git's stdin by the spawn host instead, straight from an HTTP reply
   * (see StdinFeed): the bytes never pass through this process. A feed that
   * stops short ends git's input; the run then fails with `inputError`
   * unless git exited 0 anyway. Needs a running spawn host.
   */
  stdinFeed?: StdinFeed;
  /** Aborting kills git (exit code null, `aborted`). */
  signal?: AbortSignal;
  /** The environment of the git process. Default: this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Kill git after this long, in ms. Default: no limit. */
  timeoutMs?: number;
  /** Most stdout bytes kept in memory; more kills git and fails the run. Default DEFAULT_GIT_OUTPUT_LIMIT. */
  maxOutputBytes?: number;
  /** Stream stdout here instead of keeping it (the result's stdout is then empty). */
  stdout?: Writable;
  /**
   * Run git below this process's CPU priority (nice +10): a long transfer
   * then leaves the core to the caller's own work when the two contend, and
   * takes all of it when they do not.
   */
  lowPriority?: boolean;
}

export interface GitRunResult {
  exitCode: number | null;
  stdout: Buffer;
  stderr: string;
  timedOut: boolean;
  outputLimited: boolean;
  aborted: boolean;
  /** The `stdin` stream or the `stdinFeed` failed before git had read it all. */
  inputError: Error | null;
  /** What the `stdinFeed` moved, when there was one. */
  feed: FeedResult | null;
}

/** A stdin feed that stopped short (see FeedResult's failure), with how much of the body had come. */
export class FeedError extends Error {
  constructor(
    readonly status: number,
    readonly reply: string,
    message: string,
    readonly bytes: number,
    readonly byProcess: boolean,
  ) {
    super(message);
    this.name = "FeedError";
  }
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

/** How much nicer than this process a low-priority git runs. */
const LOW_PRIORITY_STEP = 10;

/** Runs git and reports how it ended; only a failure to start it at all throws. */
export function runGit(args: readonly string[], options: GitRunOptions): Promise<GitRunResult> {
  const limit = options.maxOutputBytes ?? DEFAULT_GIT_OUTPUT_LIMIT;
  return new Promise((resolvePromise, reject) => {
    // In a process group of its own, so a limit ends git's helpers (ssh, remote-https, hooks) with it.
    const launch = gitLauncher(args, options.cwd);
    const child = spawnProcess(launch.file, launch.args, {
      cwd: options.cwd,
      env: gitEnv(options.env ?? process.env),
      stdio: [options.stdinFeed ? "ignore" : "pipe", "pipe", "pipe"],
      detached: true,
      lowerPriorityBy: options.lowPriority ? LOW_PRIORITY_STEP : 0,
      ...(options.stdinFeed ? { stdinFeed: options.stdinFeed } : {}),
    });
    const stdin = child.stdin;
    const stdoutStream = child.stdout!;
    const stderrStream = child.stderr!;
    const kill = () =>
      whenStarted(child, (pid) => {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          // already gone
        }
      });
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = "";
    let timedOut = false;
    let outputLimited = false;
    let aborted = false;
    let inputError: Error | null = null;
    const timer =
      options.timeoutMs === undefined
        ? null
        : setTimeout(() => {
            timedOut = true;
            kill();
          }, options.timeoutMs);
    const onAbort = () => {
      aborted = true;
      kill();
    };
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener("abort", onAbort, { once: true });
    if (options.stdout) {
      stdoutStream.pipe(options.stdout, { end: false });
    } else {
      stdoutStream.on("data", (chunk: Buffer) => {
        stdoutBytes += chunk.length;
        if (stdoutBytes > limit) {
          outputLimited = true;
          kill();
          return;
        }
        stdout.push(chunk);
      });
    }
    stderrStream.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-STDERR_LIMIT);
    });
    const finish = () => {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      if (options.stdout) stdoutStream.unpipe(options.stdout);
      const input = options.stdin;
      if (input && stdin && !input.readableEnded) {
        input.unpipe(stdin);
        input.resume();
      }
    };
    child.on("error", (error) => {
      finish();
      reject(new GitError(args, null, error.message, { cause: error }));
    });
    child.on("close", (exitCode) => {
      finish();
      const feed = child.feedResult ?? null;
      if (feed?.failure && exitCode !== 0) {
        const { status, reply, message, byProcess } = feed.failure;
        inputError = new FeedError(status, reply, message, feed.bytes, byProcess);
      }
      const killed = timedOut || outputLimited || aborted || inputError !== null;
      resolvePromise({
        exitCode: killed ? null : exitCode,
        stdout: Buffer.concat(stdout),
        stderr,
        timedOut,
        outputLimited,
        aborted,
        inputError,
        feed,
      });
    });
    if (!stdin) return;
    // git may exit before reading its input (e.g. on a bad argument); that is reported by its exit code.
    stdin.on("error", () => {});
    if (options.stdin) {
      options.stdin.once("error", (error) => {
        inputError = error;
        kill();
      });
      options.stdin.pipe(stdin);
    } else {
      stdin.end(options.input);
    }
  });
}

/** The GitError for a run that did not exit 0. */
export function gitFailure(args: readonly string[], result: GitRunResult): GitError {
  const stderr = result.inputError
    ? `${result.stderr}\ninput stream failed: ${result.inputError.message}`
    : result.stderr;
  return new GitError(args, result.exitCode, stderr, {
    cause: result.inputError ?? undefined,
    timedOut: result.timedOut,
    outputLimited: result.outputLimited,
    aborted: result.aborted,
  });
}

/** Runs git and returns its stdout as bytes; throws GitError unless it exits 0. */
export async function gitBuffer(args: readonly string[], options: GitRunOptions): Promise<Buffer> {
  const result = await runGit(args, options);
  if (result.exitCode !== 0) throw gitFailure(args, result);
  return result.stdout;
}

/**
 * git's stdout as a stream, for transfers too large for memory: it ends when
 * git exits 0 and fails with the GitError otherwise. Destroying the stream
 * before its end kills git.
 */
export function gitOutputStream(
  args: readonly string[],
  options: Omit<GitRunOptions, "stdout" | "maxOutputBytes">,
): Readable {
  const output = new PassThrough();
  const stop = new AbortController();
  let settled = false;
  output.once("close", () => {
    if (!settled) stop.abort();
  });
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  runGit(args, { ...options, signal, stdout: output }).then(
    (result) => {
      settled = true;
      if (result.exitCode === 0) output.end();
      else output.destroy(gitFailure(args, result));
    },
    (error: unknown) => {
      settled = true;
      output.destroy(error as Error);
    },
  );
  return output;
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

/**
 * True when `name` is a valid branch name for git: `git check-ref-format`'s
 * rules for refs/heads/<name>, and `git branch`'s refusal of a leading "-"
 * and of "HEAD". Checked here rather than by running git, so that a git that
 * fails to run (a busy sandbox) can never turn a valid name into "not valid".
 */
export function isValidBranchName(name: string): boolean {
  if (name === "" || name === "HEAD" || name.startsWith("-")) return false;
  if (name.startsWith("/") || name.endsWith("/") || name.endsWith(".") || name.includes("//")) return false;
  if (name.includes("..") || name.includes("@{") || /[ ~^:?*[\\]/.test(name)) return false;
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return false; // control characters and DEL
  }
  return name.split("/").every((part) => !part.startsWith(".") && !part.endsWith(".lock"));
}
