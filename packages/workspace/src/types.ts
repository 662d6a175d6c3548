/**
 * The ToolExecutor: everything an agent may do to a workspace. Local mode
 * implements it directly on a directory; remote mode implements it as a
 * client of the sidecar running inside the task's sandbox. Agent runners only
 * ever see this interface, so they behave the same in both modes.
 *
 * Paths are relative to the workspace root; an absolute path, `..` or a
 * symlink that leads outside the workspace is refused with WorkspacePathError.
 */

export interface DirEntry {
  name: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
}

export interface GrepMatch {
  /** Path relative to the workspace root, with forward slashes. */
  path: string;
  /** 1-based line number. */
  line: number;
  text: string;
}

export interface CommandResult {
  /** Exit code, or null when the process ended by a signal. */
  exitCode: number | null;
  signal: string | null;
  /** The command was ended because its timeout elapsed. */
  timedOut: boolean;
  /** The command was ended because the caller's AbortSignal fired. */
  aborted: boolean;
  /**
   * Set when the sandbox's resource limit ended the command, e.g.
   * "killed: memory limit 2048 MB reached". Absent otherwise.
   */
  limit?: string;
}

export interface RunCommandOptions {
  /** Aborting kills the command's whole process group. */
  signal?: AbortSignal;
  /**
   * Output as it arrives, decoded as UTF-8. Returning a promise pauses the
   * command's output until it settles: the consumer's backpressure, so a
   * command that floods its output costs bounded memory.
   */
  onOutput?: (stream: "stdout" | "stderr", text: string) => void | Promise<void>;
  /** Kill the command after this many milliseconds. Default: no limit. */
  timeoutMs?: number;
  /** Extra environment variables for the command. */
  env?: Record<string, string>;
}

export interface CommitResult {
  /** HEAD after the commit (unchanged HEAD when there was nothing to commit). */
  sha: string;
  /** False when the workspace had no changes. */
  committed: boolean;
}

export interface ToolExecutor {
  readFile(path: string): Promise<string>;
  /** Creates parent directories as needed. */
  writeFile(path: string, content: string): Promise<void>;
  /** Replaces `search` with `replace`; `search` must occur exactly once unless `all` is set. */
  editFile(
    path: string,
    search: string,
    replace: string,
    options?: { all?: boolean },
  ): Promise<{ replacements: number }>;
  listDir(path: string): Promise<DirEntry[]>;
  /** Regular-expression search over text files (skips .git and binary files). */
  grep(pattern: string, options?: { path?: string; maxResults?: number; ignoreCase?: boolean }): Promise<GrepMatch[]>;
  /** Runs `sh -c command` with the workspace as working directory. */
  runCommand(command: string, options?: RunCommandOptions): Promise<CommandResult>;
  /** Stages everything (tracked and untracked) and commits it to the checked-out branch. */
  commitAll(message: string): Promise<CommitResult>;
}

export class WorkspacePathError extends Error {
  constructor(
    readonly path: string,
    /** Why the path was refused, without the path itself. */
    readonly reason: string,
  ) {
    super(`path ${JSON.stringify(path)} refused: ${reason}`);
    this.name = "WorkspacePathError";
  }
}

export const WORKSPACE_OPERATION_ERROR_CODES = [
  "NOT_FOUND",
  "NOT_A_FILE",
  "NOT_A_DIRECTORY",
  "NO_MATCH",
  "AMBIGUOUS_MATCH",
  "TOO_LARGE",
  "INVALID",
] as const;
export type WorkspaceOperationErrorCode = (typeof WORKSPACE_OPERATION_ERROR_CODES)[number];

/** A file or directory the executor was asked to read does not exist, or an edit did not match. */
export class WorkspaceOperationError extends Error {
  constructor(
    readonly code: WorkspaceOperationErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "WorkspaceOperationError";
  }
}

export const AGENT_GIT_IDENTITY = { name: "Umbra Agent", email: "agent@umbra.local" } as const;
