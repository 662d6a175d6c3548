/**
 * The ToolExecutor on a directory of this machine: used directly in local
 * mode and by the sidecar inside each remote sandbox, so both modes share one
 * implementation.
 *
 * Invariants:
 * - Every file tool goes through confinePath: nothing outside the root and
 *   nothing inside `.git` is read or written.
 * - Commands run in their own process group with a minimal environment (see
 *   minimalEnvironment); the caller's process environment never leaks in.
 * - Git runs with the agent identity passed on the command line, signing and
 *   hooks off, and cannot climb to a repository above the root.
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, stat, lstat as statLink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { adoptTreeInto, packPathsToFile, trackedFilesIn, unpackFileInto, type WorkspaceArchiver } from "./archive";
import { confinedGitEnv, git, runGit, workspaceGitVariables } from "./git";
import { byName, grepFiles } from "./grep";
import { confinePath } from "./paths";
import { type CommandLauncher, minimalEnvironment, runInProcessGroup } from "./process-group";
import type { CommandResult, CommitResult, DirEntry, GrepMatch, RunCommandOptions, ToolExecutor } from "./types";
import { AGENT_GIT_IDENTITY, WorkspaceOperationError } from "./types";

export interface LocalExecutorOptions {
  /** HOME of commands. Default: a directory under the system temp dir, one per workspace root. */
  home?: string;
  /** Extra environment for every command; RunCommandOptions.env goes on top. Default: none. */
  env?: Record<string, string>;
  /** Largest file readFile returns, in bytes. Default 1 MiB. */
  maxReadBytes?: number;
  /** Files larger than this are skipped by grep, in bytes. Default 4 MiB. */
  maxGrepFileBytes?: number;
  /** Milliseconds between SIGTERM and SIGKILL when a command is stopped. Default 2000. */
  killGraceMs?: number;
  /** How commands are started (the sidecar starts them in the agent's sandbox). Default: `sh -c`. */
  launcher?: CommandLauncher;
}

const DEFAULT_MAX_READ_BYTES = 1024 * 1024;
const DEFAULT_MAX_GREP_FILE_BYTES = 4 * 1024 * 1024;
const DEFAULT_GREP_RESULTS = 200;

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** Translates the filesystem errors a caller can act on; anything else is rethrown unchanged. */
function translateFsError(error: unknown, path: string): never {
  const code = errnoCode(error);
  if (code === "ENOENT") throw new WorkspaceOperationError("NOT_FOUND", `${path} does not exist`, { cause: error });
  if (code === "EISDIR") throw new WorkspaceOperationError("NOT_A_FILE", `${path} is a directory`, { cause: error });
  if (code === "ENOTDIR") {
    throw new WorkspaceOperationError("NOT_A_DIRECTORY", `a parent of ${path} is not a directory`, { cause: error });
  }
  throw error;
}

function countOccurrences(text: string, search: string): number {
  return text.split(search).length - 1;
}

export class LocalExecutor implements ToolExecutor, WorkspaceArchiver {
  readonly root: string;
  private readonly options: LocalExecutorOptions;
  private homeReady: Promise<string> | undefined;

  constructor(root: string, options: LocalExecutorOptions = {}) {
    this.root = resolve(root);
    this.options = options;
  }

  async readFile(path: string): Promise<string> {
    const target = await confinePath(this.root, path);
    const limit = this.options.maxReadBytes ?? DEFAULT_MAX_READ_BYTES;
    const info = await stat(target).catch((error) => translateFsError(error, path));
    if (info.isDirectory()) throw new WorkspaceOperationError("NOT_A_FILE", `${path} is a directory`);
    if (!info.isFile()) throw new WorkspaceOperationError("NOT_A_FILE", `${path} is not a regular file`);
    if (info.size > limit) {
      throw new WorkspaceOperationError("TOO_LARGE", `${path} is ${info.size} bytes; the limit is ${limit}`);
    }
    return readFile(target, "utf8").catch((error) => translateFsError(error, path));
  }

  async writeFile(path: string, content: string): Promise<void> {
    const target = await confinePath(this.root, path);
    try {
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, content, "utf8");
    } catch (error) {
      if (errnoCode(error) === "EEXIST") {
        throw new WorkspaceOperationError("NOT_A_DIRECTORY", `a parent of ${path} is a file`, { cause: error });
      }
      translateFsError(error, path);
    }
  }

  async editFile(
    path: string,
    search: string,
    replace: string,
    options: { all?: boolean } = {},
  ): Promise<{ replacements: number }> {
    if (search.length === 0) throw new WorkspaceOperationError("INVALID", "the search text must not be empty");
    const content = await this.readFile(path);
    const count = countOccurrences(content, search);
    if (count === 0) throw new WorkspaceOperationError("NO_MATCH", `the search text does not occur in ${path}`);
    if (count > 1 && !options.all) {
      throw new WorkspaceOperationError(
        "AMBIGUOUS_MATCH",
        `the search text occurs ${count} times in ${path}; make it unique or replace all`,
      );
    }
    // split/join rather than String.replace: `$&` and friends in `replace` stay literal.
    await this.writeFile(path, content.split(search).join(replace));
    return { replacements: count };
  }

  async listDir(path: string): Promise<DirEntry[]> {
    const target = await confinePath(this.root, path);
    const info = await stat(target).catch((error) => translateFsError(error, path));
    if (!info.isDirectory()) throw new WorkspaceOperationError("NOT_A_DIRECTORY", `${path} is not a directory`);
    const names = await readdir(target, { withFileTypes: true });
    const entries = await Promise.all(
      names.map(async (entry): Promise<DirEntry> => {
        const size = await statLink(join(target, entry.name)).then(
          (s) => s.size,
          () => 0,
        );
        const type = entry.isSymbolicLink()
          ? "symlink"
          : entry.isDirectory()
            ? "dir"
            : entry.isFile()
              ? "file"
              : "other";
        return { name: entry.name, type, size };
      }),
    );
    return entries.sort(byName);
  }

  async grep(
    pattern: string,
    options: { path?: string; maxResults?: number; ignoreCase?: boolean } = {},
  ): Promise<GrepMatch[]> {
    const start = await confinePath(this.root, options.path ?? ".");
    await stat(start).catch((error) => translateFsError(error, options.path ?? "."));
    return grepFiles(pattern, {
      root: this.root,
      start,
      maxResults: options.maxResults ?? DEFAULT_GREP_RESULTS,
      ignoreCase: options.ignoreCase ?? false,
      maxFileBytes: this.options.maxGrepFileBytes ?? DEFAULT_MAX_GREP_FILE_BYTES,
    });
  }

  async runCommand(command: string, options: RunCommandOptions = {}): Promise<CommandResult> {
    const env = await this.commandEnv(options.env);
    return runInProcessGroup(command, {
      ...options,
      cwd: this.root,
      env,
      killGraceMs: this.options.killGraceMs,
      launcher: this.options.launcher,
    });
  }

  async commitAll(message: string): Promise<CommitResult> {
    const env = confinedGitEnv(this.root, await this.commandEnv());
    const run = (args: string[]) => git(args, { cwd: this.root, env });
    await stat(join(this.root, ".git")).catch(() => {
      throw new WorkspaceOperationError("INVALID", `${this.root} is not a git repository`);
    });
    await run(["add", "-A"]);
    const staged = await runGit(["diff", "--cached", "--quiet"], { cwd: this.root, env });
    if (staged.exitCode === 0) {
      const head = await runGit(["rev-parse", "--verify", "-q", "HEAD"], { cwd: this.root, env });
      return { sha: head.exitCode === 0 ? head.stdout.toString("utf8").trim() : "", committed: false };
    }
    await run([
      "-c",
      `user.name=${AGENT_GIT_IDENTITY.name}`,
      "-c",
      `user.email=${AGENT_GIT_IDENTITY.email}`,
      "-c",
      "commit.gpgsign=false",
      "-c",
      "core.hooksPath=/dev/null",
      "commit",
      "-q",
      "--no-verify",
      "-m",
      message,
    ]);
    return { sha: await run(["rev-parse", "HEAD"]), committed: true };
  }

  packPaths(paths: readonly string[], file: string, options: { limitBytes?: number } = {}): Promise<number> {
    return packPathsToFile(this.root, paths, file, options);
  }

  unpackArchive(file: string): Promise<void> {
    return unpackFileInto(this.root, file);
  }

  adoptTree(dir: string, paths: readonly string[]): Promise<boolean> {
    return adoptTreeInto(this.root, dir, paths);
  }

  trackedFiles(pathspecs: readonly string[]): Promise<{ root: string; records: string }> {
    return trackedFilesIn(this.root, pathspecs);
  }

  /** The environment of every command: minimal base, executor extras, then per-call extras. */
  private async commandEnv(extra: Record<string, string> = {}): Promise<Record<string, string>> {
    const home = await this.home();
    return minimalEnvironment(home, {
      ...workspaceGitVariables(this.root),
      ...this.options.env,
      ...extra,
    });
  }

  private home(): Promise<string> {
    this.homeReady ??= (async () => {
      const home =
        this.options.home ??
        join(tmpdir(), "umbra-home", createHash("sha256").update(this.root).digest("hex").slice(0, 16));
      await mkdir(home, { recursive: true, mode: 0o700 });
      return home;
    })();
    return this.homeReady;
  }
}

/** A ToolExecutor confined to `root`. */
export function createLocalExecutor(root: string, options?: LocalExecutorOptions): LocalExecutor {
  return new LocalExecutor(root, options);
}
