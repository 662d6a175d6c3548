/**
 * Moving a task branch in and out of the workspace as git bundles: the only
 * way code enters or leaves a remote sandbox.
 *
 * Invariants:
 * - Receiving never destroys work: it refuses a workspace with uncommitted
 *   changes (WORKSPACE_DIRTY) and a branch whose local commits are not in the
 *   bundle (WORKSPACE_DIVERGED); a non-repository workspace must be empty.
 * - Bundling first commits everything, so the bundle holds all the work, and
 *   only bundles the branch that is checked out (the one the commit went to).
 * - Git never climbs above the workspace to a repository it happens to sit in.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  confinedGitEnv,
  git,
  isValidBranchName,
  isWorkingTreeClean,
  readHead,
  runGit,
  type ToolExecutor,
} from "@repo/workspace";
import { HttpError } from "./http";

const INCOMING_REF = "refs/umbra/incoming";

/** A temporary directory for one bundle file; `dispose` removes it. */
export async function bundleScratch(): Promise<{ file: string; dispose: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "umbra-bundle-"));
  return { file: join(dir, "branch.bundle"), dispose: () => rm(dir, { recursive: true, force: true }) };
}

export async function assertBranchName(branch: string): Promise<void> {
  if (!(await isValidBranchName(branch))) {
    throw new HttpError(400, "VALIDATION_ERROR", `${JSON.stringify(branch)} is not a valid branch name`);
  }
}

function workspaceGit(root: string) {
  const env = confinedGitEnv(root);
  return {
    env,
    run: (args: string[]) => git(args, { cwd: root, env }),
    probe: (args: string[]) => runGit(args, { cwd: root, env }),
  };
}

async function prepareForReceive(root: string, branch: string): Promise<boolean> {
  const { run } = workspaceGit(root);
  if (!existsSync(join(root, ".git"))) {
    if ((await readdir(root)).length > 0) {
      throw new HttpError(409, "WORKSPACE_NOT_EMPTY", "the workspace is not a repository and not empty");
    }
    await run(["init", "-q", "-b", branch]);
    return false;
  }
  if (!(await isWorkingTreeClean(root))) {
    throw new HttpError(409, "WORKSPACE_DIRTY", "the workspace has uncommitted changes; save them first");
  }
  return true;
}

/** Makes `root` a checkout of `branch` at the tip the bundle holds for it. */
export async function receiveBranch(root: string, branch: string, bundleFile: string) {
  await assertBranchName(branch);
  const { run, probe } = workspaceGit(root);
  const hadRepository = await prepareForReceive(root, branch);
  const heads = await probe(["bundle", "list-heads", bundleFile, `refs/heads/${branch}`]);
  if (heads.exitCode !== 0) throw new HttpError(400, "VALIDATION_ERROR", "the body is not a valid git bundle");
  if (heads.stdout.length === 0) {
    throw new HttpError(400, "VALIDATION_ERROR", `the bundle does not contain branch ${branch}`);
  }
  await run(["fetch", "-q", "--no-tags", bundleFile, `+refs/heads/${branch}:${INCOMING_REF}`]);
  const tip = await run(["rev-parse", `${INCOMING_REF}^{commit}`]);
  try {
    if (hadRepository) {
      const local = await probe(["rev-parse", "--verify", "-q", `refs/heads/${branch}^{commit}`]);
      const localTip = local.stdout.toString("utf8").trim();
      if (local.exitCode === 0 && localTip !== tip) {
        const contained = await probe(["merge-base", "--is-ancestor", localTip, tip]);
        if (contained.exitCode !== 0) {
          throw new HttpError(409, "WORKSPACE_DIVERGED", `local ${branch} has commits the bundle does not contain`);
        }
      }
    }
    await run(["checkout", "-q", "-f", "-B", branch, tip]);
  } finally {
    await probe(["update-ref", "-d", INCOMING_REF]);
  }
  return { head: tip, branch };
}

/** Commits everything on the checked-out `branch`, then writes a bundle of it to `bundleFile`. */
export async function bundleBranch(
  executor: ToolExecutor,
  root: string,
  branch: string,
  message: string,
  bundleFile: string,
): Promise<{ head: string }> {
  await assertBranchName(branch);
  if (!existsSync(join(root, ".git"))) throw new HttpError(409, "NO_REPOSITORY", "the workspace is not a repository");
  const current = await readHead(root);
  if (current.branch !== branch) {
    throw new HttpError(
      409,
      "BRANCH_MISMATCH",
      `the workspace has ${current.branch ?? "no branch"} checked out, not ${branch}`,
    );
  }
  const { sha } = await executor.commitAll(message);
  if (!sha) throw new HttpError(409, "NO_COMMITS", `branch ${branch} has no commits`);
  await workspaceGit(root).run(["bundle", "create", "-q", bundleFile, `refs/heads/${branch}`]);
  return { head: sha };
}
