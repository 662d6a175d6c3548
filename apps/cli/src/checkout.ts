/**
 * `umbra checkout`: brings a task branch into a local clone of the task's
 * repository, as branch `umbra/<task-id>`, without touching the working tree
 * while it builds it.
 *
 * The branch is rebuilt in a temporary worktree on the task's base commit:
 * from the server's patches (GET /patch, `git am`, so every commit and its
 * message is kept) or — from a server without that route — from the diff
 * (GET /diff, `git apply`, one commit). Then the branch is switched to when
 * the working tree is clean. A branch of that name that Umbra delivered
 * here (its head is the task's pushed commit) is switched to as it is;
 * any other existing branch of that name is replaced only with `force`.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Client, Task } from "./client";

const run = promisify(execFile);

export class CheckoutError extends Error {}

/** The committer identity used when the repository has none configured. */
const FALLBACK_IDENTITY = {
  GIT_COMMITTER_NAME: "Umbra",
  GIT_COMMITTER_EMAIL: "umbra@umbra.local",
  GIT_AUTHOR_NAME: "Umbra",
  GIT_AUTHOR_EMAIL: "umbra@umbra.local",
};

async function git(cwd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  try {
    const { stdout } = await run("git", args, {
      cwd,
      env: { ...process.env, ...env, GIT_TERMINAL_PROMPT: "0" },
      maxBuffer: 512 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new CheckoutError(`git ${args[0]} failed: ${stderr || (error as Error).message}`);
  }
}

async function identityEnv(repo: string): Promise<Record<string, string>> {
  const name = await git(repo, ["config", "user.name"]).catch(() => "");
  const email = await git(repo, ["config", "user.email"]).catch(() => "");
  return name.trim() && email.trim() ? {} : FALLBACK_IDENTITY;
}

export interface CheckoutResult {
  branch: string;
  commits: number;
  switched: boolean;
  /** How the branch was rebuilt, or `delivered`: it was here already, as Umbra pushed it. */
  source: "patches" | "diff" | "delivered";
}

async function switchIfClean(repo: string, branch: string): Promise<boolean> {
  const dirty = (await git(repo, ["status", "--porcelain", "--untracked-files=no"])).trim() !== "";
  return (
    !dirty &&
    git(repo, ["switch", "--quiet", branch]).then(
      () => true,
      () => false,
    )
  );
}

export async function checkoutTask(
  client: Client,
  task: Task,
  cwd: string,
  options: { force?: boolean } = {},
): Promise<CheckoutResult> {
  const repo = (
    await git(cwd, ["rev-parse", "--show-toplevel"]).catch(() => {
      throw new CheckoutError(
        "this is not a git repository: run umbra checkout inside a clone of the task's repository",
      );
    })
  ).trim();
  if (!task.baseCommitSha || !task.branch) throw new CheckoutError("the task has no branch yet (it never started)");
  const base = task.baseCommitSha;
  const branch = task.branch;

  const hasBase = await git(repo, ["cat-file", "-e", `${base}^{commit}`]).then(
    () => true,
    () => false,
  );
  if (!hasBase) {
    await git(repo, ["fetch", "--quiet", "origin"]).catch(() => undefined);
    const fetched = await git(repo, ["cat-file", "-e", `${base}^{commit}`]).then(
      () => true,
      () => false,
    );
    if (!fetched) {
      throw new CheckoutError(`the task's base commit ${base.slice(0, 12)} is not in this repository; fetch it first`);
    }
  }
  const exists = await git(repo, ["rev-parse", "--verify", "--quiet", `refs/heads/${branch}`]).then(
    () => true,
    () => false,
  );
  if (exists && !options.force) {
    const local = (await git(repo, ["rev-parse", `refs/heads/${branch}`])).trim();
    const pushed = task.delivery?.pushedSha;
    if (pushed && local === pushed) {
      const commits = Number((await git(repo, ["rev-list", "--count", `${base}..${branch}`])).trim());
      return { branch, commits, switched: await switchIfClean(repo, branch), source: "delivered" };
    }
    throw new CheckoutError(`branch ${branch} already exists here; use --force to replace it`);
  }

  const env = await identityEnv(repo);
  const patches = await client.patch(task.id);
  const diff = patches === null ? await client.diff(task.id) : null;
  const scratch = await mkdtemp(join(tmpdir(), "umbra-checkout-"));
  const worktree = join(scratch, "tree");
  try {
    await git(repo, ["worktree", "add", "--quiet", "--detach", worktree, base]);
    let source: CheckoutResult["source"];
    if (patches !== null) {
      source = "patches";
      if (patches.trim()) {
        await writeFile(join(scratch, "task.mbox"), patches);
        await git(worktree, ["am", "--quiet", "--keep-cr", join(scratch, "task.mbox")], env);
      }
    } else {
      source = "diff";
      if (diff?.patch.trim()) {
        await writeFile(join(scratch, "task.diff"), diff.patch.endsWith("\n") ? diff.patch : `${diff.patch}\n`);
        await git(worktree, ["apply", "--index", "--whitespace=nowarn", join(scratch, "task.diff")]);
        await git(worktree, ["commit", "--quiet", "--no-verify", "-m", `${task.title}\n\nUmbra task ${task.id}`], env);
      }
    }
    const head = (await git(worktree, ["rev-parse", "HEAD"])).trim();
    await git(repo, ["branch", "--force", branch, head]);
    const commits = Number((await git(repo, ["rev-list", "--count", `${base}..${branch}`])).trim());
    return { branch, commits, switched: await switchIfClean(repo, branch), source };
  } finally {
    await git(repo, ["worktree", "remove", "--force", worktree]).catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
    await git(repo, ["worktree", "prune"]).catch(() => undefined);
  }
}
