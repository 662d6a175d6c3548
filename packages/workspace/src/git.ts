/**
 * A small runner for the git command line, shared by the local executor, the
 * sidecar and the server's repository store.
 *
 * Invariants:
 * - A non-zero exit becomes a GitError carrying the arguments, exit code and
 *   stderr, so callers never parse half-failed output.
 * - Git never prompts: GIT_TERMINAL_PROMPT=0 is always set.
 * - Helpers that look at a workspace never climb above it: a workspace that
 *   is not a repository must not be mistaken for a repository it sits in.
 */
import { spawn } from "node:child_process";
import { dirname, resolve } from "node:path";

export class GitError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(`git ${args.join(" ")} failed${exitCode === null ? "" : ` (exit ${exitCode})`}: ${stderr.trim()}`, options);
    this.name = "GitError";
  }
}

export interface GitRunOptions {
  cwd: string;
  /** Written to git's stdin. */
  input?: string | Buffer;
  /** The environment of the git process. Default: this process's environment. */
  env?: NodeJS.ProcessEnv;
}

export interface GitRunResult {
  exitCode: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs git and reports how it ended; only a failure to start it at all throws. */
export function runGit(args: readonly string[], options: GitRunOptions): Promise<GitRunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", [...args], {
      cwd: options.cwd,
      env: { ...(options.env ?? process.env), GIT_TERMINAL_PROMPT: "0" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.on("error", (error) => reject(new GitError(args, null, error.message, { cause: error })));
    child.on("close", (exitCode) =>
      resolve({ exitCode, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString("utf8") }),
    );
    // git may exit before reading its input (e.g. on a bad argument); that is reported by its exit code.
    child.stdin.on("error", () => {});
    child.stdin.end(options.input);
  });
}

/** Runs git and returns its stdout without the trailing newline; throws GitError on a non-zero exit. */
export async function git(args: readonly string[], options: GitRunOptions): Promise<string> {
  const result = await runGit(args, options);
  if (result.exitCode !== 0) throw new GitError(args, result.exitCode, result.stderr);
  return result.stdout.toString("utf8").replace(/\n$/, "");
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
