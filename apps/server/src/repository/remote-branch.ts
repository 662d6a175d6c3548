/**
 * A task branch and its copy on the task's own repository (`origin` of the
 * store's mirror): push, fetch, merge what others pushed, and the patch of
 * the branch. Everything runs in the server's repository store with the
 * store's git environment; nothing here touches a sandbox.
 *
 * Invariants:
 * - Pushes are fast-forward only: a remote branch that has commits the task
 *   branch lacks is never overwritten (PushRejectedError), whatever they are.
 * - The remote branch is fetched into `refs/remotes/origin/<branch>`, never
 *   into `refs/heads/*`, so a fetch cannot move a task branch.
 * - A merge is computed without a worktree (`git merge-tree --write-tree`)
 *   and only produces a commit; moving a branch to it is the caller's step.
 *   A conflicting merge produces nothing and names the conflicting files.
 */
import { GitError } from "@repo/workspace";
import type { RepositoryStore } from "./repository-store";
import { storeGit, storeGitBuffer, storeGitRun as storeGitResult } from "./store-git";

/** How long a push or fetch of one branch may take, ms. */
const TRANSFER_TIMEOUT_MS = 5 * 60_000;

/** The remote refused the push because its branch has commits the task branch lacks. */
export class PushRejectedError extends Error {
  constructor(readonly reason: string) {
    super(`the remote branch has commits the task branch does not have (${reason})`);
    this.name = "PushRejectedError";
  }
}

/** A push or fetch failed for another reason (credentials, network, the remote refused); `reason` is git's word. */
export class TransferError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = "TransferError";
  }
}

export type MergeResult =
  | { kind: "up-to-date" }
  | { kind: "fast-forward"; sha: string }
  | { kind: "merged"; sha: string }
  | { kind: "conflict"; files: string[] };

export class RemoteBranches {
  constructor(private readonly store: RepositoryStore) {}

  /** The ref holding the remote's copy of `branch` as last fetched or pushed. */
  static trackingRef(branch: string): string {
    return `refs/remotes/origin/${branch}`;
  }

  /**
   * Pushes the task branch to the same name on the repository, fast-forward
   * only. `auth` are the git config arguments carrying the credential.
   * Returns the pushed commit.
   */
  async push(repoUrl: string, branch: string, auth: string[]): Promise<string> {
    const cwd = this.store.mirrorPath(repoUrl);
    const sha = await this.store.branchHead(repoUrl, branch);
    try {
      await storeGit([...auth, "push", "--quiet", "origin", `${sha}:refs/heads/${branch}`], {
        cwd,
        timeoutMs: TRANSFER_TIMEOUT_MS,
      });
    } catch (error) {
      const stderr = error instanceof GitError ? error.stderr : String(error);
      const rejected = /\[rejected\].*\((fetch first|non-fast-forward|stale info)\)/.exec(stderr);
      if (rejected) throw new PushRejectedError(rejected[1]!);
      throw new TransferError(transferReason(error));
    }
    await storeGit(["update-ref", RemoteBranches.trackingRef(branch), sha], { cwd });
    return sha;
  }

  /** Fetches the repository's copy of `branch`; its commit, or null when the repository has no such branch. */
  async fetch(repoUrl: string, branch: string, auth: string[]): Promise<string | null> {
    const cwd = this.store.mirrorPath(repoUrl);
    const ref = RemoteBranches.trackingRef(branch);
    try {
      await storeGit([...auth, "fetch", "--quiet", "--no-tags", "origin", `+refs/heads/${branch}:${ref}`], {
        cwd,
        timeoutMs: TRANSFER_TIMEOUT_MS,
      });
    } catch (error) {
      if (error instanceof GitError && /couldn't find remote ref/i.test(error.stderr)) return null;
      throw new TransferError(transferReason(error));
    }
    return (await storeGit(["rev-parse", "--verify", `${ref}^{commit}`], { cwd })).trim();
  }

  /**
   * How to bring `theirs` into `ours`: nothing to do, a fast-forward to
   * `theirs`, a new merge commit (parents `ours`, `theirs`; no ref moves), or
   * a conflict with the files it is in.
   */
  async merge(repoUrl: string, ours: string, theirs: string, message: string): Promise<MergeResult> {
    const cwd = this.store.mirrorPath(repoUrl);
    if (ours === theirs || (await this.isAncestor(cwd, theirs, ours))) return { kind: "up-to-date" };
    if (await this.isAncestor(cwd, ours, theirs)) return { kind: "fast-forward", sha: theirs };
    const result = await storeGitResult(
      ["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs],
      { cwd },
    );
    // Exit code 1 is a conflict: the tree comes first, then the conflicted files.
    const [tree, ...rest] = result.stdout.toString("utf8").split("\0");
    if (result.exitCode === 1) return { kind: "conflict", files: [...new Set(rest.filter((file) => file.length > 0))] };
    if (result.exitCode !== 0 || !tree) {
      throw new GitError(["merge-tree", ours, theirs], result.exitCode, result.stderr, { timedOut: result.timedOut });
    }
    const sha = await storeGit(["commit-tree", tree.trim(), "-p", ours, "-p", theirs, "-m", message], { cwd });
    return { kind: "merged", sha: sha.trim() };
  }

  /** The branch since `base` as an mbox of patches (`git format-patch --stdout`), for `git am`. */
  async formatPatch(repoUrl: string, base: string, branch: string): Promise<Buffer> {
    return storeGitBuffer(["format-patch", "--stdout", "--no-color", `${base}..refs/heads/${branch}`], {
      cwd: this.store.mirrorPath(repoUrl),
      maxOutputBytes: 256 * 1024 * 1024,
    });
  }

  private async isAncestor(cwd: string, ancestor: string, descendant: string): Promise<boolean> {
    try {
      await storeGit(["merge-base", "--is-ancestor", ancestor, descendant], { cwd });
      return true;
    } catch (error) {
      if (error instanceof GitError && error.exitCode === 1) return false;
      throw error;
    }
  }
}

/**
 * What a failed transfer's stderr says went wrong: the ref git refused and
 * why, else its fatal error, else its first line (without "To <url>" and hints).
 */
function transferReason(error: unknown): string {
  if (!(error instanceof GitError)) return error instanceof Error ? error.message : String(error);
  if (error.timedOut) return "timed out";
  const lines = error.stderr
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !/^(To |From |hint:)/.test(line));
  const refused = lines.find((line) => /\[(remote )?rejected\]/.test(line));
  const fatal = lines.find((line) => line.startsWith("fatal:"));
  const chosen = refused?.replace(/^!\s*/, "") ?? fatal ?? lines[0];
  return chosen?.replace(/^(fatal|error|remote):\s*/, "") ?? `git exited with code ${error.exitCode}`;
}
