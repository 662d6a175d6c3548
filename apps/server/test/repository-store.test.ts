/**
 * The repository store's side of moving a task branch: packs out of the
 * mirror hold only what the receiver lacks, and a pack coming back is only
 * saved when it is whole and continues the last saved commit. The task's
 * diff, whose patch stays bounded whatever the branch holds. The first
 * fetch of a repository on this disk, which links its objects. And the
 * upstream objects sandboxes borrow, which never hold a task's work.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { createRepo, git, tempDir } from "../../../test/support/git";
import { WorkspaceSaveError } from "../src/errors";
import { MAX_PACKS } from "../src/repository/borrowed-objects";
import { localRepositoryPath } from "../src/repository/local-objects";
import { RepositoryStore } from "../src/repository/repository-store";

const BRANCH = "umbra/transfer-task";
const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function track(dir: string): string {
  dirs.push(dir);
  return dir;
}

/** A store with the task branch of a small upstream, and a workspace clone of that branch. */
async function setUp() {
  const upstream = track(createRepo({ "README.md": "# Upstream\n", "src/a.txt": "a\n" }));
  const store = new RepositoryStore(track(tempDir("umbra-store-")));
  const { baseCommitSha } = await store.prepareBase(upstream, null);
  await store.ensureBranch(upstream, BRANCH, baseCommitSha);
  const workspace = track(tempDir("umbra-workspace-"));
  git(workspace, "init", "-q");
  git(workspace, "fetch", "-q", store.mirrorPath(upstream), `${BRANCH}:${BRANCH}`);
  git(workspace, "checkout", "-q", "-f", BRANCH);
  return { upstream, store, workspace, base: baseCommitSha };
}

function commit(workspace: string, path: string, content: string): string {
  mkdirSync(dirname(join(workspace, path)), { recursive: true });
  writeFileSync(join(workspace, path), content);
  git(workspace, "add", "-A");
  git(workspace, "commit", "-q", "-m", `write ${path}`);
  return git(workspace, "rev-parse", "HEAD");
}

/** A pack from `repo`: of `revisions` (rev-list arguments) or, with `objects`, of exactly those objects. */
function pack(repo: string, input: string[], options: { objects?: boolean } = {}): Buffer {
  const args = ["pack-objects", "--stdout", "-q", ...(options.objects ? [] : ["--revs", "--thin"])];
  return execFileSync("git", args, { cwd: repo, input: `${input.join("\n")}\n`, maxBuffer: 64 * 1024 * 1024 });
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const objectsIn = (packed: Buffer) => packed.readUInt32BE(8);

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

describe("packs out of the repository store", () => {
  it("holds the whole branch for a receiver with nothing, and only what a receiver lacks otherwise", async () => {
    const { upstream, store, workspace, base } = await setUp();
    const everything = await collect(await store.packFor(upstream, base, []));
    // The commit, the root and src trees, README.md and src/a.txt.
    expect(objectsIn(everything)).toBe(5);

    const head = commit(workspace, "src/b.txt", "b\n");
    await store.receivePack(upstream, BRANCH, Readable.from([pack(workspace, [head, `^${base}`])]), { base, head });
    const unknown = "1234567890123456789012345678901234567890";
    const missing = await collect(await store.packFor(upstream, head, [base, unknown]));
    // The new commit, the root and src trees, and src/b.txt.
    expect(objectsIn(missing)).toBe(4);
    // Both commits with all their trees and files: an unknown have is no reason to leave anything out.
    expect(objectsIn(await collect(await store.packFor(upstream, head, [unknown])))).toBe(9);
  });
});

describe("packs into the repository store", () => {
  it("saves a history that continues the last saved commit and moves the branch and its saved record", async () => {
    const { upstream, store, workspace, base } = await setUp();
    commit(workspace, "one.txt", "one\n");
    const head = commit(workspace, "two.txt", "two\n");
    const stats = await store.receivePack(upstream, BRANCH, Readable.from([pack(workspace, [head, `^${base}`])]), {
      base,
      head,
    });
    expect(stats.objects).toBe(6);
    expect(await store.branchHead(upstream, BRANCH)).toBe(head);
    expect(await store.savedHead(upstream, BRANCH)).toBe(head);
    expect(git(store.mirrorPath(upstream), "show", `${head}:two.txt`)).toBe("two");
  });

  it("refuses a history that does not continue the last saved commit", async () => {
    const { upstream, store, workspace, base } = await setUp();
    git(workspace, "checkout", "-q", "--orphan", "elsewhere");
    const head = commit(workspace, "alone.txt", "alone\n");
    const error = await rejection(
      store.receivePack(upstream, BRANCH, Readable.from([pack(workspace, [head])]), { base, head }),
    );
    expect(error).toBeInstanceOf(WorkspaceSaveError);
    expect(error).toMatchObject({ code: "STORE_REFUSED", retryable: false });
    expect(await store.savedHead(upstream, BRANCH)).toBe(base);
  });

  it("refuses a pack that lacks objects of the new commits", async () => {
    const { upstream, store, workspace, base } = await setUp();
    const head = commit(workspace, "c.txt", "c\n");
    const withoutTheBlob = pack(workspace, [head, git(workspace, "rev-parse", `${head}^{tree}`)], { objects: true });
    const error = await rejection(store.receivePack(upstream, BRANCH, Readable.from([withoutTheBlob]), { base, head }));
    expect(error).toMatchObject({ code: "TRANSFER_FAILED", retryable: true });
    expect(await store.branchHead(upstream, BRANCH)).toBe(base);
  });

  it("refuses to save over a branch that was saved meanwhile", async () => {
    const { upstream, store, workspace, base } = await setUp();
    const first = commit(workspace, "first.txt", "1\n");
    await store.receivePack(upstream, BRANCH, Readable.from([pack(workspace, [first, `^${base}`])]), {
      base,
      head: first,
    });
    const second = commit(workspace, "second.txt", "2\n");
    const error = await rejection(
      store.receivePack(upstream, BRANCH, Readable.from([pack(workspace, [second, `^${base}`])]), {
        base,
        head: second,
      }),
    );
    expect(error).toMatchObject({ code: "BRANCH_MOVED", retryable: true });
    expect(await store.savedHead(upstream, BRANCH)).toBe(first);
  });

  it("leaves the branch as it was when the stream breaks mid-transfer", async () => {
    const { upstream, store, workspace, base } = await setUp();
    const head = commit(workspace, "big.txt", "x".repeat(100_000));
    const whole = pack(workspace, [head, `^${base}`]);
    async function* broken() {
      yield whole.subarray(0, whole.length / 2);
      throw new Error("connection reset");
    }
    const error = await rejection(store.receivePack(upstream, BRANCH, Readable.from(broken()), { base, head }));
    expect(error).toMatchObject({ code: "TRANSFER_FAILED" });
    expect((error as Error).message).toMatch(/connection reset/);
    expect(await store.branchHead(upstream, BRANCH)).toBe(base);
  });
});

describe("the saved record", () => {
  it("is created with the task branch and removed with it", async () => {
    const { upstream, store, base } = await setUp();
    expect(git(store.mirrorPath(upstream), "rev-parse", RepositoryStore.savedRef(BRANCH))).toBe(base);
    await store.deleteBranch(upstream, BRANCH);
    expect(() => git(store.mirrorPath(upstream), "rev-parse", "--verify", RepositoryStore.savedRef(BRANCH))).toThrow();
  });
});

describe("the task diff", () => {
  it("cuts a patch larger than its limit at a line end and says how much it left out", async () => {
    const { upstream, store, workspace, base } = await setUp();
    const line = `${"generated ".repeat(9)}line\n`;
    const lines = Math.ceil((12 * 1024 * 1024) / line.length);
    const head = commit(workspace, "generated.txt", line.repeat(lines));
    await store.receivePack(upstream, BRANCH, Readable.from([pack(workspace, [head, `^${base}`])]), { base, head });
    const diff = await store.diff(upstream, base, BRANCH);
    expect(diff.files).toEqual([{ path: "generated.txt", additions: lines, deletions: 0 }]);
    expect(diff.patch.length).toBeLessThanOrEqual(8 * 1024 * 1024 + 100);
    const [kept, note] = [
      diff.patch.slice(0, diff.patch.lastIndexOf("… ")),
      diff.patch.slice(diff.patch.lastIndexOf("… ")),
    ];
    expect(kept.endsWith(`+${line}`)).toBe(true);
    const omitted = Number(/^… (\d+) bytes of the patch omitted\n$/.exec(note)?.[1]);
    const whole = git(store.mirrorPath(upstream), "diff", "--no-color", base, head).length + 1;
    expect(Buffer.byteLength(kept) + omitted).toBe(whole);
  }, 120_000);
});

describe("the first fetch of a repository on this disk", () => {
  /** Every object file of `objectsDir` (packs and loose objects), by its path under it, with its inode. */
  function objectFiles(objectsDir: string): Map<string, number> {
    const files = new Map<string, number>();
    for (const dir of readdirSync(objectsDir)) {
      if (dir === "info" || !statSync(join(objectsDir, dir)).isDirectory()) continue;
      for (const name of readdirSync(join(objectsDir, dir))) {
        files.set(`${dir}/${name}`, statSync(join(objectsDir, dir, name)).ino);
      }
    }
    return files;
  }

  /** A repository whose objects are in a pack and loose, on two branches. */
  function packedAndLoose(): string {
    const repo = track(createRepo({ "README.md": "# Local\n", "src/a.txt": "a\n" }));
    git(repo, "repack", "-a", "-d", "-q");
    git(repo, "checkout", "-q", "-b", "feature");
    commit(repo, "src/b.txt", "b\n");
    git(repo, "checkout", "-q", "main");
    commit(repo, "src/c.txt", "c\n");
    return repo;
  }

  it.each([
    ["an absolute path", (repo: string) => repo],
    ["a file:// URL", (repo: string) => pathToFileURL(repo).href],
  ])("links its object files instead of transferring them, given %s", async (_, urlOf) => {
    const repo = packedAndLoose();
    const source = objectFiles(join(repo, ".git", "objects"));
    expect([...source.keys()].some((path) => path.startsWith("pack/"))).toBe(true);
    expect([...source.keys()].some((path) => !path.startsWith("pack/"))).toBe(true);
    const store = new RepositoryStore(track(tempDir("umbra-store-")));
    const url = urlOf(repo);

    const { baseCommitSha } = await store.prepareBase(url, null);

    expect(baseCommitSha).toBe(git(repo, "rev-parse", "main"));
    // The source's pack is the same file (inode); its loose objects, linked, were then packed into one
    // pack of the mirror's own holding exactly them: nothing was transferred.
    const mirrorObjects = join(store.mirrorPath(url), "objects");
    const mirrored = objectFiles(mirrorObjects);
    const sourcePacks = [...source].filter(([path]) => path.startsWith("pack/"));
    for (const [path, ino] of sourcePacks) expect(mirrored.get(path)).toBe(ino);
    expect([...mirrored.keys()].filter((path) => !path.startsWith("pack/"))).toEqual([]);
    const ownPacks = [...mirrored.keys()].filter((path) => path.endsWith(".idx") && !source.has(path));
    expect(ownPacks).toHaveLength(1);
    const looseIds = [...source.keys()]
      .filter((path) => !path.startsWith("pack/"))
      .map((path) => path.replace("/", ""));
    const inOwnPack = execFileSync("git", ["show-index"], { input: readFileSync(join(mirrorObjects, ownPacks[0]!)) })
      .toString()
      .trim()
      .split("\n")
      .map((line) => line.split(" ")[1]);
    expect(inOwnPack.sort()).toEqual(looseIds.sort());
    const branches = await store.listBranches(url);
    expect(branches.branches).toEqual(["feature", "main"]);
    const tree = track(tempDir("umbra-tree-"));
    await store.addWorktree(url, BRANCH, join(tree, "w"), baseCommitSha);
    expect(readFileSync(join(tree, "w", "src", "c.txt"), "utf8")).toBe("c\n");
    // The source stays as it was.
    expect(objectFiles(join(repo, ".git", "objects"))).toEqual(source);
  });

  it("transfers as usual from a repository with many loose objects", async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 1000; i++) files[`src/file-${i}.txt`] = `file ${i}\n`;
    const repo = track(createRepo(files));
    const store = new RepositoryStore(track(tempDir("umbra-store-")));

    const { baseCommitSha } = await store.prepareBase(repo, null);

    expect(baseCommitSha).toBe(git(repo, "rev-parse", "main"));
    const linked = new Set(objectFiles(join(repo, ".git", "objects")).values());
    const mirrored = objectFiles(join(store.mirrorPath(repo), "objects"));
    expect([...mirrored.values()].filter((ino) => linked.has(ino))).toEqual([]);
    expect(git(store.mirrorPath(repo), "cat-file", "-p", `${baseCommitSha}:src/file-999.txt`)).toBe("file 999");
  });

  it("transfers as usual from a repository that borrows objects through alternates", async () => {
    const origin = packedAndLoose();
    const shared = track(tempDir("umbra-shared-"));
    execFileSync("git", ["clone", "-q", "--shared", origin, join(shared, "repo")]);
    const repo = join(shared, "repo");
    const store = new RepositoryStore(track(tempDir("umbra-store-")));

    const { baseCommitSha } = await store.prepareBase(repo, null);

    expect(baseCommitSha).toBe(git(origin, "rev-parse", "main"));
    const mirrored = objectFiles(join(store.mirrorPath(repo), "objects"));
    const linked = new Set(objectFiles(join(origin, ".git", "objects")).values());
    expect(mirrored.size).toBeGreaterThan(0);
    expect([...mirrored.values()].filter((ino) => linked.has(ino))).toEqual([]);
    expect(git(store.mirrorPath(repo), "cat-file", "-p", `${baseCommitSha}:src/c.txt`)).toBe("c");
  });

  it("names the local path of absolute paths and file:// URLs only", () => {
    expect(localRepositoryPath("/srv/repos/app.git")).toBe("/srv/repos/app.git");
    expect(localRepositoryPath("file:///srv/repos/app.git")).toBe("/srv/repos/app.git");
    expect(localRepositoryPath("https://example.com/app.git")).toBeNull();
    expect(localRepositoryPath("git@example.com:app.git")).toBeNull();
    expect(localRepositoryPath("file://other-host/srv/app.git")).toBeNull();
  });
});

describe("the objects sandboxes borrow", () => {
  /** The ids of every object in the packs of a borrowed-objects directory. */
  function borrowedIds(dir: string): string[] {
    const packDir = join(dir, "objects", "pack");
    return readdirSync(packDir)
      .filter((name) => name.endsWith(".idx"))
      .flatMap((name) =>
        execFileSync("git", ["show-index"], { input: readFileSync(join(packDir, name)) })
          .toString()
          .trim()
          .split("\n")
          .map((line) => line.split(" ")[1]!),
      )
      .sort();
  }

  const packsIn = (dir: string) => readdirSync(join(dir, "objects", "pack")).filter((name) => name.endsWith(".pack"));
  const pins = (mirror: string) => git(mirror, "for-each-ref", "--format=%(refname)", "refs/umbra/borrowed/");

  it("hold the upstream history only, never a task's commits, and grow by what upstream adds", async () => {
    const { upstream, store, workspace, base } = await setUp();
    const head = commit(workspace, "secret.txt", "a task's work\n");
    await store.receivePack(upstream, BRANCH, Readable.from([pack(workspace, [head, `^${base}`])]), { base, head });
    const mirror = store.mirrorPath(upstream);

    // A server whose umask keeps its own files from other users (the sandboxes' uids).
    const umask = process.umask(0o077);
    const dir = await store.borrowedObjects(upstream).finally(() => process.umask(umask));

    expect(dir).toBe(store.borrowedPath(upstream));
    const upstreamIds = (tip: string) =>
      git(mirror, "rev-list", "--objects", tip)
        .split("\n")
        .map((line) => line.split(" ")[0]!)
        .sort();
    expect(borrowedIds(dir)).toEqual(upstreamIds(base));
    expect(borrowedIds(dir)).not.toContain(head);
    expect(borrowedIds(dir)).not.toContain(git(mirror, "rev-parse", `${head}:secret.txt`));
    expect(readFileSync(join(dir, "tips"), "utf8")).toBe(`${base}\n`);
    expect(pins(mirror)).toBe(`refs/umbra/borrowed/${base}`);
    // A sandbox reads them as another user: everything is readable by all, nothing writable but by the server.
    for (const path of [
      dir,
      join(dir, "tips"),
      join(dir, "objects", "pack"),
      ...packsIn(dir).map((name) => join(dir, "objects", "pack", name)),
    ]) {
      expect(statSync(path).mode & 0o004).toBe(0o004);
      expect(statSync(path).mode & 0o022).toBe(0);
    }

    const moved = commit(upstream, "src/b.txt", "b\n");
    git(upstream, "branch", "behind", base); // a branch whose history is held through another
    await store.prepareBase(upstream, null);
    await store.borrowedObjects(upstream);

    expect(packsIn(dir)).toHaveLength(2);
    expect(borrowedIds(dir)).toEqual(upstreamIds(moved));
    expect(readFileSync(join(dir, "tips"), "utf8")).toBe(`${moved}\n`);
    expect(pins(mirror)).toBe(`refs/umbra/borrowed/${moved}`);

    await store.borrowedObjects(upstream);
    expect(packsIn(dir)).toHaveLength(2);
  });

  it("add no pack past their limit, and keep the tips they hold", async () => {
    const { upstream, store } = await setUp();
    const dir = await store.borrowedObjects(upstream);
    const packDir = join(dir, "objects", "pack");
    const tips = readFileSync(join(dir, "tips"), "utf8");
    for (let i = packsIn(dir).length; i < MAX_PACKS; i++) writeFileSync(join(packDir, `pack-filler-${i}.pack`), "");
    commit(upstream, "src/b.txt", "b\n");
    await store.prepareBase(upstream, null);

    await store.borrowedObjects(upstream);

    expect(packsIn(dir)).toHaveLength(MAX_PACKS);
    expect(readFileSync(join(dir, "tips"), "utf8")).toBe(tips);
  });
});
