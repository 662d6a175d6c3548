/**
 * Moving the task branch in and out of the workspace as git packs: the only
 * way code enters or leaves a remote sandbox.
 *
 * Transfers are streamed and incremental: the workspace says which commits it
 * has (haves), the server sends a pack of only what those lack, and a save
 * sends back only the objects of the commits made since the last saved one.
 * A new workspace on the server's host may borrow the repository's upstream
 * history instead (git alternates on a read-only directory the server binds
 * in): then only the task's own commits travel.
 *
 * Invariants:
 * - Receiving never destroys work: it refuses a workspace with uncommitted
 *   changes (WORKSPACE_DIRTY) and a branch whose local commits are not in
 *   the received history (WORKSPACE_DIVERGED); a non-repository workspace
 *   must be empty. A pack is only accepted when the tip is complete.
 * - Saving takes whatever the agent left (saveWorkspace) and never fails for
 *   the agent's use of git: branch switches, amends, rebases, detached HEAD.
 * - Git never climbs above the workspace to a repository it happens to sit in.
 */
import { constants, existsSync } from "node:fs";
import { access, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import {
  confinedGitEnv,
  git,
  gitOutputStream,
  isValidBranchName,
  isWorkingTreeClean,
  readBorrowedTips,
  runGit,
  sidecarProtocol,
} from "@repo/workspace";
import { HttpError } from "./http";

const INCOMING_REF = "refs/umbra/incoming";
/** Refs at the commits a borrowed-objects directory holds whole (so they count as haves). */
const BORROWED_REFS = "refs/umbra/borrowed/";
/** Objects above this size are neither deltified nor held whole in memory by git. */
const BIG_FILE_CONFIG = ["-c", "core.bigFileThreshold=64m"];

export function assertBranchName(branch: string): void {
  if (!isValidBranchName(branch)) {
    throw new HttpError(400, "VALIDATION_ERROR", `${JSON.stringify(branch)} is not a valid branch name`);
  }
}

function workspaceGit(root: string) {
  const env = confinedGitEnv(root);
  return {
    env,
    run: (args: string[], input?: string) => git(args, { cwd: root, env, input }),
    probe: (args: string[], input?: string) => runGit(args, { cwd: root, env, input }),
  };
}

function hasRepository(root: string): boolean {
  return existsSync(join(root, ".git"));
}

/**
 * The objects directory of a borrowed-objects directory the server offers
 * (see apps/server/src/repository/borrowed-objects.ts), when this sandbox can
 * read it (it is bound in read-only); null otherwise.
 */
async function borrowable(dir: string | undefined): Promise<string | null> {
  if (!dir) return null;
  const objects = join(dir, "objects");
  try {
    await access(join(objects, "pack"), constants.R_OK | constants.X_OK);
    return objects;
  } catch {
    return null;
  }
}

/**
 * Tips of the workspace's branches and its HEAD, newest first: what a sender
 * need not send again. `borrows`: the workspace has no repository yet and
 * can read the offered `borrow` directory, so a receive will borrow it.
 */
export async function workspaceHaves(root: string, borrow?: string): Promise<{ commits: string[]; borrows: boolean }> {
  if (!hasRepository(root)) return { commits: [], borrows: (await borrowable(borrow)) !== null };
  const { probe } = workspaceGit(root);
  const refs = await probe([
    "for-each-ref",
    "--sort=-committerdate",
    `--count=${sidecarProtocol.MAX_HAVES}`,
    "--format=%(objectname) %(objecttype)",
    "refs/heads",
    "refs/umbra",
  ]);
  const head = await probe(["rev-parse", "--verify", "-q", "HEAD^{commit}"]);
  const commits = new Set<string>();
  if (head.exitCode === 0) commits.add(head.stdout.toString("utf8").trim());
  for (const line of refs.stdout.toString("utf8").split("\n")) {
    const [sha, type] = line.split(" ");
    if (sha && type === "commit") commits.add(sha);
  }
  return { commits: [...commits].slice(0, sidecarProtocol.MAX_HAVES), borrows: false };
}

async function prepareForReceive(root: string, branch: string, borrow: string | undefined): Promise<boolean> {
  const { run } = workspaceGit(root);
  if (!hasRepository(root)) {
    if ((await readdir(root)).length > 0) {
      throw new HttpError(409, "WORKSPACE_NOT_EMPTY", "the workspace is not a repository and not empty");
    }
    await run(["init", "-q", "-b", branch]);
    await borrowObjects(root, borrow);
    return false;
  }
  if (!(await isWorkingTreeClean(root))) {
    throw new HttpError(409, "WORKSPACE_DIRTY", "the workspace has uncommitted changes; save them first");
  }
  return true;
}

/**
 * Makes a new repository borrow the objects of `borrow` (git alternates),
 * with a ref at each commit it holds whole: the pack that follows need not
 * carry their history, and the check of what it brought stops at them.
 */
async function borrowObjects(root: string, borrow: string | undefined): Promise<void> {
  const objects = await borrowable(borrow);
  if (!objects || !borrow) return;
  const { probe, run } = workspaceGit(root);
  await writeFile(join(root, ".git", "objects", "info", "alternates"), `${objects}\n`);
  const tips = await readBorrowedTips(borrow);
  if (tips.length === 0) return;
  const check = await probe(["cat-file", "--batch-check=%(objectname) %(objecttype)"], `${tips.join("\n")}\n`);
  const present = check.stdout
    .toString("utf8")
    .split("\n")
    .filter((line) => line.endsWith(" commit"))
    .map((line) => line.split(" ")[0]!);
  if (present.length === 0) return;
  await run(["update-ref", "--stdin"], present.map((sha) => `update ${BORROWED_REFS}${sha} ${sha}\n`).join(""));
}

/** Indexes the streamed pack into the workspace's objects and checks that `tip`'s history is complete. */
async function indexPack(root: string, tip: string, pack: Readable): Promise<void> {
  const { env, probe } = workspaceGit(root);
  const indexed = await runGit([...BIG_FILE_CONFIG, "index-pack", "--stdin", "--fix-thin"], {
    cwd: root,
    env,
    stdin: pack,
  });
  if (indexed.exitCode !== 0) {
    const reason = indexed.inputError?.message ?? indexed.stderr.trim().split("\n").pop() ?? "";
    throw new HttpError(400, "BAD_PACK", `the body is not a usable git pack: ${reason}`);
  }
  const type = await probe(["cat-file", "-t", tip]);
  if (type.exitCode !== 0 || type.stdout.toString("utf8").trim() !== "commit") {
    throw new HttpError(400, "BAD_PACK", `after the pack the workspace has no commit ${tip}`);
  }
  // Walks only what no ref reaches yet, i.e. what the pack brought: every object of it must be there.
  const connected = await probe(["rev-list", "--objects", "--quiet", tip, "--not", "--all"]);
  if (connected.exitCode !== 0) {
    throw new HttpError(400, "BAD_PACK", `the pack lacks objects of ${tip}'s history the workspace does not have`);
  }
}

/**
 * Makes `root` a checkout of `branch` at `tip`, with the objects the streamed
 * `pack` brings; a new repository borrows the objects of `borrow` if it can read them.
 */
export async function receiveBranch(root: string, branch: string, tip: string, pack: Readable, borrow?: string) {
  assertBranchName(branch);
  const { run, probe } = workspaceGit(root);
  const hadRepository = await prepareForReceive(root, branch, borrow);
  await indexPack(root, tip, pack);
  await run(["update-ref", INCOMING_REF, tip]);
  try {
    if (hadRepository) {
      const local = await probe(["rev-parse", "--verify", "-q", `refs/heads/${branch}^{commit}`]);
      const localTip = local.stdout.toString("utf8").trim();
      if (local.exitCode === 0 && localTip !== tip) {
        const contained = await probe(["merge-base", "--is-ancestor", localTip, tip]);
        if (contained.exitCode !== 0) {
          throw new HttpError(409, "WORKSPACE_DIVERGED", `local ${branch} has commits the received history lacks`);
        }
      }
    }
    await run(["checkout", "-q", "-f", "-B", branch, tip]);
  } finally {
    await probe(["update-ref", "-d", INCOMING_REF]);
  }
  return { head: tip, branch };
}

/**
 * A pack of what `tip`'s history holds beyond the histories of `exclude`
 * (those the workspace has; others are ignored), streamed. Thin: deltas may
 * refer to the excluded histories' objects, which the receiver has.
 */
export async function packObjects(root: string, tip: string, exclude: readonly string[]): Promise<Readable> {
  if (!hasRepository(root)) throw new HttpError(409, "NO_REPOSITORY", "the workspace is not a repository");
  const { env, probe } = workspaceGit(root);
  const wanted = [tip, ...exclude];
  const check = await probe(["cat-file", "--batch-check=%(objectname) %(objecttype)"], `${wanted.join("\n")}\n`);
  const types = new Map<string, string>();
  for (const line of check.stdout.toString("utf8").split("\n")) {
    const [sha, type] = line.split(" ");
    if (sha && type) types.set(sha, type);
  }
  if (types.get(tip) !== "commit") throw new HttpError(409, "UNKNOWN_COMMIT", `the workspace has no commit ${tip}`);
  const excluded = exclude.filter((sha) => types.get(sha) === "commit").map((sha) => `^${sha}`);
  return gitOutputStream(
    [...BIG_FILE_CONFIG, "pack-objects", "--stdout", "--revs", "--thin", "--delta-base-offset", "-q"],
    { cwd: root, env, input: `${[tip, ...excluded].join("\n")}\n` },
  );
}
