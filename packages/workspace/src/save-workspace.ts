/**
 * Saving whatever an agent left in a workspace onto the task branch: the one
 * save algorithm of local worktrees and remote sandboxes alike.
 *
 * An agent is free to use git as it likes — switch or create branches, amend,
 * rebase, reset, detach HEAD, leave a half-staged index, a conflicted merge or
 * untracked files. A save takes the workspace's files as they are (every
 * non-ignored file, staged or not) and puts them on the task branch:
 *
 * - when the checked-out history descends from `base` (the last saved commit),
 *   the branch fast-forwards to it, plus one commit for uncommitted changes,
 *   so the agent's own commits are kept;
 * - otherwise (amend, rebase, reset, an unrelated branch, no commit at all) a
 *   new commit on top of `base` carries the workspace's tree.
 *
 * Invariants:
 * - The result always descends from `base`: nothing saved before is lost.
 * - The result's tree is the workspace's tree.
 * - Afterwards the workspace has the task branch checked out at the result,
 *   with an index that matches it and every file untouched; an interrupted
 *   merge, rebase, cherry-pick or revert is forgotten (its files are saved).
 * - The agent's index is only replaced at the very end: the snapshot is built
 *   in a scratch copy, so a failed save leaves the workspace as it was.
 * - Git runs with hooks, fsmonitor and signing off and without the user's or
 *   the system's configuration, so nothing the agent configured runs.
 */
import { copyFile, readFile, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { git, runGit, workspaceGitVariables } from "./git";
import { DEFAULT_PATH } from "./process-group";
import { AGENT_GIT_IDENTITY } from "./types";

export interface SaveWorkspaceOptions {
  /** The task branch, e.g. `umbra/<task-id>`. */
  branch: string;
  /** The task branch's last saved commit (a commit id or a ref naming it); the result descends from it. */
  base: string;
  /** The message of a commit the save makes. */
  message: string;
  /** Another ref to set to the result in the same update as the branch (e.g. a saved-head record). */
  recordIn?: string;
}

export interface SavedWorkspace {
  /** The commit the task branch points to now. */
  head: string;
  base: string;
  /** The save made a commit (there were changes beyond what was committed). */
  committed: boolean;
  /** The checked-out history did not descend from `base`: `head` is a new commit on `base`. */
  rewritten: boolean;
  /** What the workspace had checked out before the save. */
  previous: { head: string | null; branch: string | null };
}

export const SAVE_REFUSAL_CODES = ["NO_REPOSITORY", "BASE_MISSING"] as const;
export type SaveRefusalCode = (typeof SAVE_REFUSAL_CODES)[number];

/** The workspace cannot be saved as it is; `code` says why. Trying again will not help. */
export class SaveRefusedError extends Error {
  constructor(
    readonly code: SaveRefusalCode,
    message: string,
  ) {
    super(message);
    this.name = "SaveRefusedError";
  }
}

/** Operation state an agent may leave behind; `git status` would report it as in progress. */
const OPERATION_STATE = [
  "MERGE_HEAD",
  "MERGE_MSG",
  "MERGE_MODE",
  "AUTO_MERGE",
  "CHERRY_PICK_HEAD",
  "REVERT_HEAD",
  "sequencer",
  "rebase-merge",
  "rebase-apply",
];

const SAVE_CONFIG = [
  "-c",
  "core.hooksPath=/dev/null",
  "-c",
  "core.fsmonitor=false",
  "-c",
  "commit.gpgsign=false",
  // Files above this go straight into a pack instead of through memory.
  "-c",
  "core.bigFileThreshold=64m",
];

function saveGit(root: string) {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH || DEFAULT_PATH,
    HOME: tmpdir(),
    LANG: "C",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_AUTHOR_NAME: AGENT_GIT_IDENTITY.name,
    GIT_AUTHOR_EMAIL: AGENT_GIT_IDENTITY.email,
    GIT_COMMITTER_NAME: AGENT_GIT_IDENTITY.name,
    GIT_COMMITTER_EMAIL: AGENT_GIT_IDENTITY.email,
    ...workspaceGitVariables(root),
  };
  return {
    env,
    run: (args: string[], extra: NodeJS.ProcessEnv = {}, input?: string) =>
      git([...SAVE_CONFIG, ...args], { cwd: root, env: { ...env, ...extra }, input }),
    probe: (args: string[], extra: NodeJS.ProcessEnv = {}, input?: string) =>
      runGit([...SAVE_CONFIG, ...args], { cwd: root, env: { ...env, ...extra }, input }),
  };
}

interface WorkspaceState {
  gitDir: string;
  baseCommit: string;
  baseTree: string;
  headCommit: string | null;
  headTree: string | null;
  /** What HEAD refers to (`refs/heads/…`), or null when it is detached. */
  headRef: string | null;
}

/**
 * Where the repository is and what `base` and HEAD are. One git process in
 * the usual case; when that fails (no repository, `base` missing, HEAD on a
 * branch without commits) a slower path finds out which.
 */
async function inspect(probe: Probe, base: string): Promise<WorkspaceState> {
  const fast = await probe([
    "rev-parse",
    "--absolute-git-dir",
    `${base}^{commit}`,
    `${base}^{tree}`,
    "HEAD^{commit}",
    "HEAD^{tree}",
  ]);
  let state: Omit<WorkspaceState, "headRef">;
  if (fast.exitCode === 0) {
    const [gitDir, baseCommit, baseTree, headCommit, headTree] = fast.stdout.toString("utf8").trim().split("\n");
    state = {
      gitDir: gitDir!,
      baseCommit: baseCommit!,
      baseTree: baseTree!,
      headCommit: headCommit!,
      headTree: headTree!,
    };
  } else {
    const [gitDirProbe, objects] = await Promise.all([
      probe(["rev-parse", "--absolute-git-dir"]),
      probe(
        ["cat-file", "--batch-check=%(objectname)"],
        {},
        `${base}^{commit}\n${base}^{tree}\nHEAD^{commit}\nHEAD^{tree}\n`,
      ),
    ]);
    if (gitDirProbe.exitCode !== 0) {
      throw new SaveRefusedError("NO_REPOSITORY", "the workspace is no longer a git repository (its .git is gone)");
    }
    const [baseCommit, baseTree, headCommit, headTree] = objects.stdout
      .toString("utf8")
      .split("\n")
      .map((line) => (/^[0-9a-f]{40,64}$/.test(line) ? line : null));
    if (!baseCommit || !baseTree) {
      throw new SaveRefusedError("BASE_MISSING", `the workspace lacks the last saved commit ${base}`);
    }
    const gitDir = gitDirProbe.stdout.toString("utf8").trim();
    state = { gitDir, baseCommit, baseTree, headCommit: headCommit ?? null, headTree: headTree ?? null };
  }
  const head = await readFile(join(state.gitDir, "HEAD"), "utf8").catch(() => "");
  const headRef = head.startsWith("ref: ") ? head.slice("ref: ".length).trim() : null;
  return { ...state, headRef };
}

/**
 * Saves the workspace at `root` onto `options.branch` (a valid branch name;
 * the caller checks it); see the module comment.
 */
export async function saveWorkspace(root: string, options: SaveWorkspaceOptions): Promise<SavedWorkspace> {
  const { branch, message } = options;
  const { run, probe } = saveGit(root);
  const { gitDir, baseCommit, baseTree, headCommit, headTree, headRef } = await inspect(probe, options.base);
  const previous = {
    head: headCommit,
    branch: headRef?.startsWith("refs/heads/") ? headRef.slice("refs/heads/".length) : null,
  };
  const index = join(gitDir, "index");
  const scratchIndex = join(gitDir, "index.umbra-save");
  try {
    const tree = await snapshotTree(run, probe, index, scratchIndex);
    const descends =
      previous.head !== null && (previous.head === baseCommit || (await isAncestor(probe, baseCommit, previous.head)));
    const { head, committed } = await commitOnto(run, {
      parent: descends ? { commit: previous.head!, tree: headTree } : { commit: baseCommit, tree: baseTree },
      tree,
      message: descends ? message : `${message}${rewriteNote(previous)}`,
    });
    const updates: string[] = [];
    if (!(previous.branch === branch && previous.head === head)) updates.push(`update refs/heads/${branch} ${head}`);
    if (options.recordIn && head !== baseCommit) updates.push(`update ${options.recordIn} ${head}`);
    if (updates.length > 0) await run(["update-ref", "-m", "save workspace", "--stdin"], {}, `${updates.join("\n")}\n`);
    if (headRef !== `refs/heads/${branch}`) await run(["symbolic-ref", "HEAD", `refs/heads/${branch}`]);
    // The scratch index holds exactly `tree` with fresh stat data: it becomes the workspace's index.
    await rename(scratchIndex, index);
    await Promise.all(OPERATION_STATE.map((name) => rm(join(gitDir, name), { recursive: true, force: true })));
    return { head, base: baseCommit, committed, rewritten: !descends, previous };
  } finally {
    await rm(scratchIndex, { force: true });
  }
}

type Run = ReturnType<typeof saveGit>["run"];
type Probe = ReturnType<typeof saveGit>["probe"];

/**
 * Stages every non-ignored file into a copy of the index (so unchanged files
 * are not hashed again) and writes the tree. An index git cannot read is
 * replaced by an empty one: the files are the truth.
 */
async function snapshotTree(run: Run, probe: Probe, index: string, scratchIndex: string): Promise<string> {
  const scratch = { GIT_INDEX_FILE: scratchIndex };
  await copyFile(index, scratchIndex).catch(() => undefined);
  const added = await probe(["add", "-A"], scratch);
  if (added.exitCode !== 0) {
    await rm(scratchIndex, { force: true });
    await run(["add", "-A"], scratch);
  }
  return run(["write-tree"], scratch);
}

async function isAncestor(probe: Probe, ancestor: string, descendant: string): Promise<boolean> {
  return (await probe(["merge-base", "--is-ancestor", ancestor, descendant])).exitCode === 0;
}

function rewriteNote(previous: SavedWorkspace["previous"]): string {
  const where = previous.branch ? `branch ${previous.branch}` : "a detached HEAD";
  return `\n\nThe workspace's history did not continue the task branch (it had ${where} at ${
    previous.head ?? "no commit"
  } checked out); this commit holds the workspace's files on top of the last saved commit.`;
}

/** `parent` itself when its tree is the workspace's; otherwise a new commit of `tree` on it. */
async function commitOnto(
  run: Run,
  input: { parent: { commit: string; tree: string | null }; tree: string; message: string },
): Promise<{ head: string; committed: boolean }> {
  const { parent, tree, message } = input;
  if (parent.tree === tree) return { head: parent.commit, committed: false };
  const head = await run(["commit-tree", tree, "-p", parent.commit, "-F", "-"], {}, `${message}\n`);
  return { head, committed: true };
}
