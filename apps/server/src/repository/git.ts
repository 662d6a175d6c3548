/**
 * Runs git as a child process with a fixed, non-interactive environment: no
 * terminal prompts (an unreachable or private repository fails fast instead
 * of hanging), no user or system config beyond what we pass.
 */
import { execFile } from "node:child_process";

export class GitError extends Error {
  constructor(
    readonly args: string[],
    readonly stderr: string,
    readonly exitCode: number | null,
  ) {
    super(`git ${args[0]} failed: ${stderr.trim() || `exit code ${exitCode}`}`);
    this.name = "GitError";
  }
}

interface GitOptions {
  cwd: string;
  input?: string | Buffer;
  timeoutMs?: number;
  maxBuffer?: number;
}

/** The identity of the server's own git processes (also how a later server recognises orphans of a dead one). */
export const SERVER_GIT_EMAIL = "umbra@umbra.local";

const GIT_ENV = {
  GIT_TERMINAL_PROMPT: "0",
  GIT_ASKPASS: "/bin/false",
  SSH_ASKPASS: "/bin/false",
  GIT_SSH_COMMAND: "ssh -o BatchMode=yes -o ConnectTimeout=15",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_AUTHOR_NAME: "Umbra",
  GIT_AUTHOR_EMAIL: SERVER_GIT_EMAIL,
  GIT_COMMITTER_NAME: "Umbra",
  GIT_COMMITTER_EMAIL: SERVER_GIT_EMAIL,
  LANG: "C",
};

export function runGit(args: string[], options: GitOptions & { encoding: "buffer" }): Promise<Buffer>;
export function runGit(args: string[], options: GitOptions & { encoding?: "utf8" }): Promise<string>;
export function runGit(
  args: string[],
  options: GitOptions & { encoding?: "utf8" | "buffer" },
): Promise<string | Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      "git",
      ["-c", "protocol.file.allow=always", "-c", "core.hooksPath=/dev/null", ...args],
      {
        cwd: options.cwd,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...GIT_ENV },
        encoding: options.encoding === "buffer" ? "buffer" : "utf8",
        maxBuffer: options.maxBuffer ?? 32 * 1024 * 1024,
        timeout: options.timeoutMs ?? 120_000,
      },
      (error, stdout, stderr) => {
        if (error) {
          const code = typeof error.code === "number" ? error.code : null;
          reject(new GitError(args, stderr.toString() || error.message, code));
        } else {
          resolve(stdout);
        }
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}
