/**
 * The repository store: one bare mirror per repository under
 * `<DATA_DIR>/repos`, fetched on demand. Task workspaces are created from it
 * (local mode: a git worktree, which shares the store's objects, so a commit
 * in the workspace is already saved in the store), and every task branch
 * `umbra/<task-id>` lives in it, so a task's work outlives any workspace or VM.
 *
 * Upstream branches are fetched into `refs/remotes/origin/*`, never into
 * `refs/heads/*`, so a fetch can never overwrite or prune a task branch.
 * Operations on one mirror are serialized: inside this process by default,
 * across every server process sharing the store when given locks that hold
 * across processes (Postgres advisory locks: see apps/server/README.md).
 * Transfers out of a mirror only read, and run alongside.
 *
 * Each task branch has a saved-head record, `refs/umbra/saved/<branch>`: the
 * last commit a save put on the branch. Saves only ever move it to a
 * descendant, so everything saved stays reachable. A local workspace shares
 * the mirror's refs, so the agent can move `refs/heads/<branch>` itself (an
 * amend, a reset); the record is what such moves cannot touch.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import type { PackStats, StdinFeed } from "@repo/workspace";
import { WorkspaceError, WorkspaceSaveError } from "../errors";
import { KeyedMutex } from "../utils/keyed-mutex";
import { borrowedDir, refreshBorrowed } from "./borrowed-objects";
import { linkLocalObjects } from "./local-objects";
import { consolidatePacks, indexPack, isAncestor, isComplete, knownCommits, packHistory } from "./pack-transfer";
import {
  gitReason,
  storeGit as runGit,
  storeGitBuffer as runGitBuffer,
  storeGitBounded,
  TRANSFER_TIMEOUT_MS,
} from "./store-git";

export { SERVER_GIT_EMAIL } from "./store-git";

/** Pause before the one retry of a failed mirror fetch, ms. */
const FETCH_RETRY_DELAY_MS = 2_000;

/** Most of a task's patch the diff holds, bytes; the rest is counted, never held in memory. */
const PATCH_LIMIT = 8 * 1024 * 1024;

export interface DiffSummary {
  files: { path: string; additions: number; deletions: number }[];
  patch: string;
}

export interface RepositoryBranches {
  /** null when the repository has no commits yet. */
  defaultBranch: string | null;
  branches: string[];
}

/** Largest file, in bytes, whose text the tree browser returns (512 KiB). */
export const TREE_FILE_LIMIT = 512 * 1024;

export type TreeEntry =
  | {
      type: "dir";
      path: string;
      entries: { name: string; type: "dir" | "file" | "submodule"; size: number | null }[];
    }
  | { type: "file"; path: string; size: number; binary: boolean; truncated: boolean; content: string };

/** A path inside a repository's tree: relative, no `..` or empty segments, no control characters. */
export function isTreePath(path: string): boolean {
  if (path === "") return true;
  if (path.length > 4096 || path.startsWith("/") || path.endsWith("/")) return false;
  if ([...path].some((char) => char.charCodeAt(0) < 0x20)) return false;
  return path.split("/").every((segment) => segment !== "" && segment !== "." && segment !== "..");
}

export interface PreparedBase {
  /** The branch the task starts from (the repository's default when none was asked for). */
  baseBranch: string;
  baseCommitSha: string;
}

/** Serializes work per key; the store's key is the mirror's path. */
export interface KeyedLock {
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
}

/**
 * Runs a transfer with `repoUrl` with the git config arguments that carry the
 * server's credential for it (see delivery/git-credentials.ts).
 */
export type TransferAuth = <T>(repoUrl: string, transfer: (configArgs: string[]) => Promise<T>) => Promise<T>;

const anonymous: TransferAuth = (_repoUrl, transfer) => transfer([]);

export interface RepositoryStoreOptions {
  /** Locks per mirror; with several server processes, locks that hold across them. Default: this process only. */
  locks?: KeyedLock;
  /** Credentials for fetching private repositories and pushing task branches. Default: none. */
  auth?: TransferAuth;
}

export class RepositoryStore {
  private readonly mutex: KeyedLock;
  private readonly auth: TransferAuth;

  constructor(
    private readonly root: string,
    options: RepositoryStoreOptions = {},
  ) {
    this.mutex = options.locks ?? new KeyedMutex();
    this.auth = options.auth ?? anonymous;
  }

  static branchFor(taskId: string): string {
    return `umbra/${taskId}`;
  }

  /** The ref recording the last saved commit of `branch`. */
  static savedRef(branch: string): string {
    return `refs/umbra/saved/${branch}`;
  }

  /** Where the bare mirror of `repoUrl` lives. */
  mirrorPath(repoUrl: string): string {
    const key = createHash("sha256").update(normalizeRepoUrl(repoUrl)).digest("hex").slice(0, 16);
    const name = (repoUrl.replace(/\/+$/, "").split(/[/:]/).pop() ?? "repo")
      .replace(/\.git$/, "")
      .replace(/[^\w.-]/g, "_");
    return join(this.root, `${name || "repo"}-${key}.git`);
  }

  /** A stable key for the repository, used by the full-text index. */
  repoKey(repoUrl: string): string {
    return normalizeRepoUrl(repoUrl);
  }

  /**
   * Makes sure the mirror exists and is fetched, then resolves the base
   * branch (default: the repository's default branch) to a commit. An
   * aborted `signal` ends the transfers with the remote (a stalled remote
   * must not hold the stop of an initialization, or a server's shutdown).
   */
  async prepareBase(repoUrl: string, baseBranch: string | null, signal?: AbortSignal): Promise<PreparedBase> {
    const mirror = this.mirrorPath(repoUrl);
    return this.mutex.run(mirror, async () => {
      signal?.throwIfAborted();
      await this.fetchMirror(repoUrl, mirror, signal);
      signal?.throwIfAborted();
      const branch = baseBranch ?? (await this.defaultBranch(mirror));
      const sha = await runGit(["rev-parse", "--verify", "--quiet", `refs/remotes/origin/${branch}^{commit}`], {
        cwd: mirror,
      }).catch(() => null);
      if (!sha) {
        throw new WorkspaceError(`branch ${JSON.stringify(branch)} does not exist in ${repoUrl}`, null, false);
      }
      return { baseBranch: branch, baseCommitSha: sha.trim() };
    });
  }

  /** True when the task branch already exists in the store (the task has run before). */
  async hasBranch(repoUrl: string, branch: string): Promise<boolean> {
    const mirror = this.mirrorPath(repoUrl);
    if (!existsSync(mirror)) return false;
    const out = await runGit(["rev-parse", "--verify", "--quiet", `refs/heads/${branch}`], { cwd: mirror }).catch(
      () => null,
    );
    return out !== null && out.trim() !== "";
  }

  async branchHead(repoUrl: string, branch: string): Promise<string> {
    const out = await runGit(["rev-parse", "--verify", `refs/heads/${branch}`], { cwd: this.mirrorPath(repoUrl) });
    return out.trim();
  }

  /**
   * Moves the task branch and its saved-head record from `from` to `to` as
   * one ref transaction; refused (GitError) if the branch is no longer at
   * `from`. Callers move it forward (commits taken in from the task's remote
   * branch), or back to undo their own move.
   */
  async moveBranch(repoUrl: string, branch: string, from: string, to: string): Promise<void> {
    const mirror = this.mirrorPath(repoUrl);
    const transaction = `start\nupdate refs/heads/${branch} ${to} ${from}\nupdate ${RepositoryStore.savedRef(branch)} ${to}\nprepare\ncommit\n`;
    await this.mutex.run(mirror, () => runGit(["update-ref", "--stdin"], { cwd: mirror, input: transaction }));
  }

  /**
   * Fast-forwards the worktree at `path` (which must have `branch` checked
   * out and nothing uncommitted) to its descendant `sha`: branch, index and
   * files move together.
   */
  async fastForwardWorktree(repoUrl: string, path: string, branch: string, sha: string): Promise<void> {
    await this.mutex.run(this.mirrorPath(repoUrl), async () => {
      const head = await runGit(["symbolic-ref", "--quiet", "HEAD"], { cwd: path }).catch(() => "");
      if (head.trim() !== `refs/heads/${branch}`) {
        throw new WorkspaceError(
          `the workspace has ${head.trim() || "no branch"} checked out, not ${branch}`,
          null,
          false,
        );
      }
      await runGit(["merge", "--ff-only", "--quiet", sha], { cwd: path });
      await runGit(["update-ref", RepositoryStore.savedRef(branch), sha], { cwd: path });
    });
  }

  /**
   * The last saved commit of the task branch: its saved-head record, or the
   * branch head for a branch saved before there were records.
   */
  async savedHead(repoUrl: string, branch: string): Promise<string> {
    const mirror = this.mirrorPath(repoUrl);
    const saved = await runGit(["rev-parse", "--verify", "--quiet", `${RepositoryStore.savedRef(branch)}^{commit}`], {
      cwd: mirror,
    }).catch(() => null);
    return saved?.trim() || this.branchHead(repoUrl, branch);
  }

  /** Creates the task branch at `sha` unless it exists. */
  async ensureBranch(repoUrl: string, branch: string, sha: string): Promise<void> {
    const mirror = this.mirrorPath(repoUrl);
    await this.mutex.run(mirror, async () => {
      if (!(await this.hasBranch(repoUrl, branch))) await runGit(["branch", branch, sha], { cwd: mirror });
      await this.recordIfMissing(mirror, branch);
    });
  }

  private async recordIfMissing(mirror: string, branch: string): Promise<void> {
    const ref = RepositoryStore.savedRef(branch);
    const exists = await runGit(["rev-parse", "--verify", "--quiet", ref], { cwd: mirror }).catch(() => null);
    if (!exists) await runGit(["update-ref", ref, `refs/heads/${branch}`], { cwd: mirror });
  }

  /**
   * Checks the task branch out into `path` as a worktree of the mirror,
   * creating the branch at `baseSha` the first time.
   */
  async addWorktree(repoUrl: string, branch: string, path: string, baseSha: string): Promise<string> {
    const mirror = this.mirrorPath(repoUrl);
    return this.mutex.run(mirror, async () => {
      await runGit(["worktree", "prune"], { cwd: mirror });
      if (existsSync(path)) await rm(path, { recursive: true, force: true });
      await mkdir(join(path, ".."), { recursive: true });
      const exists = await this.hasBranch(repoUrl, branch);
      const args = exists ? ["worktree", "add", path, branch] : ["worktree", "add", "-b", branch, path, baseSha];
      await runGit(args, { cwd: mirror });
      await this.recordIfMissing(mirror, branch);
      return (await runGit(["rev-parse", "HEAD"], { cwd: path })).trim();
    });
  }

  /** Removes a worktree; the branch and its commits stay in the store. */
  async removeWorktree(repoUrl: string, path: string): Promise<void> {
    const mirror = this.mirrorPath(repoUrl);
    await this.mutex.run(mirror, async () => {
      if (existsSync(mirror)) {
        await runGit(["worktree", "remove", "--force", path], { cwd: mirror }).catch(() => undefined);
        await rm(path, { recursive: true, force: true });
        await runGit(["worktree", "prune"], { cwd: mirror });
      } else {
        await rm(path, { recursive: true, force: true });
      }
    });
  }

  /**
   * The directory of `repoUrl`'s upstream objects that sandboxes on this host
   * borrow (borrowed-objects.ts), brought up to the mirror's last fetch.
   */
  async borrowedObjects(repoUrl: string, signal?: AbortSignal): Promise<string> {
    const mirror = this.mirrorPath(repoUrl);
    return this.mutex.run(mirror, () => refreshBorrowed(mirror, signal));
  }

  /** Where `repoUrl`'s borrowed objects are (whether or not they exist yet). */
  borrowedPath(repoUrl: string): string {
    return borrowedDir(this.mirrorPath(repoUrl));
  }

  /**
   * A pack of `tip`'s history for a workspace that has the commits `haves`
   * (those the mirror does not know are ignored): with none, the whole
   * history; otherwise only what they lack, thin. Streamed; reading the
   * mirror needs no lock.
   */
  async packFor(repoUrl: string, tip: string, haves: readonly string[]): Promise<Readable> {
    const mirror = this.mirrorPath(repoUrl);
    return packHistory(mirror, tip, await knownCommits(mirror, haves));
  }

  /**
   * Saves a branch sent back from a remote workspace: indexes the streamed
   * pack of `head`'s history beyond `base`, then moves the branch and its
   * saved-head record from `base` to `head`. Refused (WorkspaceSaveError)
   * unless `head` is complete and descends from `base` and `base` is still
   * the last saved commit, so saved work is never overwritten.
   */
  async receivePack(
    repoUrl: string,
    branch: string,
    pack: Readable | StdinFeed,
    { base, head }: { base: string; head: string },
  ): Promise<PackStats> {
    const mirror = this.mirrorPath(repoUrl);
    let stats: PackStats;
    try {
      stats = await indexPack(mirror, pack);
    } catch (error) {
      throw new WorkspaceSaveError("TRANSFER_FAILED", `the saved commits did not arrive: ${gitReason(error)}`, {
        cause: error,
      });
    }
    return this.mutex.run(mirror, async () => {
      const [complete, descends, saved] = await Promise.all([
        isComplete(mirror, head, base),
        isAncestor(mirror, base, head),
        this.savedHead(repoUrl, branch),
      ]);
      if (!complete) {
        throw new WorkspaceSaveError("TRANSFER_FAILED", `the workspace sent an incomplete history for ${head}`);
      }
      if (!descends) {
        throw new WorkspaceSaveError("STORE_REFUSED", `${head} does not descend from the last saved commit ${base}`);
      }
      if (saved !== base) {
        throw new WorkspaceSaveError("BRANCH_MOVED", `the task branch was saved at ${saved} meanwhile, not ${base}`);
      }
      const transaction = [
        "start",
        `update refs/heads/${branch} ${head}`,
        `update ${RepositoryStore.savedRef(branch)} ${head}`,
        "commit",
      ];
      await runGit(["update-ref", "--stdin"], { cwd: mirror, input: `${transaction.join("\n")}\n` });
      await consolidatePacks(mirror).catch(() => undefined);
      return stats;
    });
  }

  async deleteBranch(repoUrl: string, branch: string): Promise<void> {
    const mirror = this.mirrorPath(repoUrl);
    if (!existsSync(mirror)) return;
    await this.mutex.run(mirror, async () => {
      await runGit(["branch", "-D", branch], { cwd: mirror }).catch(() => undefined);
      await runGit(["update-ref", "-d", RepositoryStore.savedRef(branch)], { cwd: mirror }).catch(() => undefined);
    });
  }

  /** The task branch against the commit it started from; a patch over PATCH_LIMIT is cut and says how much is left out. */
  async diff(repoUrl: string, baseSha: string, branch: string): Promise<DiffSummary> {
    const mirror = this.mirrorPath(repoUrl);
    const range = [baseSha, `refs/heads/${branch}`];
    const numstat = await runGit(["diff", "--numstat", "-z", ...range], { cwd: mirror });
    const { text, omittedBytes } = await storeGitBounded(
      ["diff", "--no-color", ...range],
      { cwd: mirror },
      PATCH_LIMIT,
    );
    const patch = omittedBytes > 0 ? `${text}… ${omittedBytes} bytes of the patch omitted\n` : text;
    return { files: parseNumstat(numstat), patch };
  }

  /**
   * The repository's branches as the remote has them now (the mirror is
   * fetched first), and its default branch — null for an empty repository.
   */
  async listBranches(repoUrl: string): Promise<RepositoryBranches> {
    const mirror = this.mirrorPath(repoUrl);
    return this.mutex.run(mirror, async () => {
      await this.fetchMirror(repoUrl, mirror);
      const out = await runGit(["for-each-ref", "--format=%(refname:lstrip=3)", "refs/remotes/origin/"], {
        cwd: mirror,
      });
      const branches = out
        .split("\n")
        .map((name) => name.trim())
        .filter((name) => name !== "" && name !== "HEAD")
        .sort((a, b) => a.localeCompare(b));
      const defaultBranch = await this.defaultBranch(mirror).catch(() => null);
      return { defaultBranch, branches };
    });
  }

  /**
   * One entry of a commit's tree: a directory's listing or a file's text.
   * `path` is relative to the repository root ("" for the root) and has been
   * checked with `isTreePath`. Returns null when nothing is at `path`.
   */
  async readTreeEntry(repoUrl: string, commit: string, path: string): Promise<TreeEntry | null> {
    const mirror = this.mirrorPath(repoUrl);
    const object = `${commit}:${path}`;
    const type = await runGit(["cat-file", "-t", object], { cwd: mirror }).catch(() => null);
    if (type === null) return null;
    if (type.trim() === "tree") {
      const out = await runGit(["ls-tree", "-z", "--long", object], { cwd: mirror, maxOutputBytes: 64 * 1024 * 1024 });
      const entries: TreeEntry & { type: "dir" } = { type: "dir", path, entries: [] };
      for (const line of out.split("\0")) {
        const match = /^\d+ (blob|tree|commit) [0-9a-f]+\s+(\d+|-)\t(.*)$/s.exec(line);
        if (!match) continue;
        const kind = match[1] === "tree" ? "dir" : match[1] === "commit" ? "submodule" : "file";
        entries.entries.push({ name: match[3]!, type: kind, size: match[2] === "-" ? null : Number(match[2]) });
      }
      entries.entries.sort((a, b) =>
        (a.type === "dir") !== (b.type === "dir") ? (a.type === "dir" ? -1 : 1) : a.name.localeCompare(b.name),
      );
      return entries;
    }
    if (type.trim() !== "blob") return null;
    const size = Number((await runGit(["cat-file", "-s", object], { cwd: mirror })).trim());
    // A file past the limit is not read at all: the browser says how big it is instead.
    if (size > TREE_FILE_LIMIT) return { type: "file", path, size, binary: false, truncated: true, content: "" };
    const bytes = await runGitBuffer(["cat-file", "blob", object], { cwd: mirror, maxOutputBytes: size + 1 });
    const binary = bytes.subarray(0, 8000).includes(0);
    return { type: "file", path, size, binary, truncated: false, content: binary ? "" : bytes.toString("utf8") };
  }

  /** Fetches the mirror from its remote; every git here that talks to the remote ends when `signal` aborts. */
  private async fetchMirror(repoUrl: string, mirror: string, signal?: AbortSignal): Promise<void> {
    let linkedLoose = 0;
    if (!existsSync(join(mirror, "HEAD"))) {
      await mkdir(this.root, { recursive: true });
      await rm(mirror, { recursive: true, force: true });
      await runGit(["init", "--bare", "--quiet", mirror], { cwd: this.root });
      await runGit(["remote", "add", "origin", repoUrl], { cwd: mirror });
      await runGit(["config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"], { cwd: mirror });
      await runGit(["config", "gc.auto", "0"], { cwd: mirror });
      // A repository on this disk: its objects are linked, not sent (the fetch below then transfers nothing).
      // Linking is only a shortcut: if it fails, the fetch transfers what is missing.
      linkedLoose = await linkLocalObjects(repoUrl, mirror).catch(() => 0);
    }
    const fetch = () =>
      this.auth(repoUrl, (configArgs) =>
        runGit([...configArgs, "fetch", "--prune", "--quiet", "origin"], {
          cwd: mirror,
          timeoutMs: 10 * 60_000,
          signal,
        }),
      );
    try {
      // Once more after a failure: a fetch of a server process that died mid-fetch (on another host, out of
      // reach of this one's locks) can still be writing into the mirror and make the first attempt fail.
      await fetch().catch(async (error) => {
        if (signal?.aborted) throw error;
        await delay(FETCH_RETRY_DELAY_MS, undefined, { signal });
        await fetch();
      });
      // Asks the remote again (for its HEAD): it can stall as the fetch can.
      await runGit(["remote", "set-head", "origin", "--auto"], { cwd: mirror, signal }).catch(() => undefined);
      // Linked loose objects are packed once here, not compressed again by every pack sent out of the mirror.
      // If that fails, the mirror is whole all the same, only slower to send from.
      if (linkedLoose > 0) {
        const repack = { cwd: mirror, timeoutMs: TRANSFER_TIMEOUT_MS, signal, lowPriority: true };
        await runGit(["repack", "-d", "-q"], repack).catch(() => undefined);
      }
    } catch (error) {
      throw new WorkspaceError(`cannot fetch ${repoUrl}: ${gitReason(error)}`, null, true, { cause: error });
    }
  }

  private async defaultBranch(mirror: string): Promise<string> {
    const head = await runGit(["symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"], { cwd: mirror }).catch(
      () => null,
    );
    if (head) return head.trim().replace(/^refs\/remotes\/origin\//, "");
    for (const candidate of ["main", "master"]) {
      const found = await runGit(["rev-parse", "--verify", "--quiet", `refs/remotes/origin/${candidate}`], {
        cwd: mirror,
      }).catch(() => null);
      if (found) return candidate;
    }
    throw new WorkspaceError("the repository has no default branch (is it empty?)", null, false);
  }

  /** Every file of a commit with its blob id and size, for the full-text index (which is keyed by blob). */
  async listBlobs(repoUrl: string, sha: string): Promise<{ path: string; blobId: string; size: number }[]> {
    const out = await runGit(["ls-tree", "-r", "-z", "--long", sha], {
      cwd: this.mirrorPath(repoUrl),
      maxOutputBytes: 256 * 1024 * 1024,
    });
    const files: { path: string; blobId: string; size: number }[] = [];
    for (const entry of out.split("\0")) {
      const match = /^\d+ blob ([0-9a-f]+)\s+(\d+)\t(.*)$/s.exec(entry);
      if (match) files.push({ blobId: match[1]!, size: Number(match[2]), path: match[3]! });
    }
    return files;
  }

  /** The contents of blobs by id (one `git cat-file --batch`); a missing blob is left out of the map. */
  async readBlobs(repoUrl: string, blobIds: string[]): Promise<Map<string, Buffer>> {
    const out = await runGitBuffer(["cat-file", "--batch"], {
      cwd: this.mirrorPath(repoUrl),
      input: `${blobIds.join("\n")}\n`,
      maxOutputBytes: 1024 * 1024 * 1024,
    });
    const contents = new Map<string, Buffer>();
    let offset = 0;
    for (const blobId of blobIds) {
      const headerEnd = out.indexOf(10, offset);
      if (headerEnd < 0) break;
      const header = out.subarray(offset, headerEnd).toString();
      offset = headerEnd + 1;
      const size = Number(header.split(" ")[2]);
      if (header.endsWith("missing") || !Number.isFinite(size)) continue;
      contents.set(blobId, out.subarray(offset, offset + size));
      offset += size + 1;
    }
    return contents;
  }
}

/** The one spelling of a repository Umbra keys things by (mirrors, the index, environments, secrets). */
export function normalizeRepoUrl(repoUrl: string): string {
  return repoUrl.trim().replace(/\/+$/, "");
}

function parseNumstat(out: string): DiffSummary["files"] {
  const files: DiffSummary["files"] = [];
  const parts = out.split("\0");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (!part) continue;
    const [added, deleted, path] = part.split("\t");
    let name = path ?? "";
    if (name === "") {
      // A rename: "-z" puts the old and new names in the next two fields.
      i += 2;
      name = parts[i] ?? "";
    }
    files.push({
      path: name,
      additions: added === "-" ? 0 : Number(added),
      deletions: deleted === "-" ? 0 : Number(deleted),
    });
  }
  return files;
}
