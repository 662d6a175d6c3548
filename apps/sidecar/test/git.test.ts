import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import {
  FeedError,
  gitBuffer,
  runGit,
  SidecarClient,
  SidecarError,
  startSpawnHost,
  stopSpawnHost,
} from "@repo/workspace";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { initRepo, type RunningSidecar, removeTempDirs, startSidecar, TEST_GIT_ENV, tempDir, testGit } from "./helpers";

const running: RunningSidecar[] = [];

afterEach(async () => {
  for (const sidecar of running.splice(0)) {
    await sidecar.stop();
    expect(sidecar.output()).not.toContain(sidecar.token);
  }
});

afterAll(removeTempDirs);

async function sidecarOnEmptyWorkspace() {
  const sidecar = await startSidecar(await tempDir());
  running.push(sidecar);
  return sidecar;
}

/** A pack of `revisions` (rev-list arguments, `^sha` excludes) from `repo`; thin when it excludes anything. */
function packOf(repo: string, revisions: string[]): Promise<Buffer> {
  return gitBuffer(["pack-objects", "--stdout", "--revs", "--thin", "-q"], {
    cwd: repo,
    env: TEST_GIT_ENV,
    input: `${revisions.join("\n")}\n`,
  });
}

const objectsIn = (pack: Buffer) => pack.readUInt32BE(8);
const streamOf = (pack: Buffer) => Readable.from([pack]);

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function commitFile(repo: string, name: string, content: string): Promise<string> {
  await writeFile(join(repo, name), content);
  await testGit(repo, ["add", "-A"]);
  await testGit(repo, ["commit", "-q", "-m", `add ${name}`]);
  return testGit(repo, ["rev-parse", "HEAD"]);
}

/** A source repository with a task branch one commit past `main`, and a pack of its whole history. */
async function sourceBranch(branch = "umbra/task-1") {
  const source = await tempDir();
  await initRepo(source, { "README.md": "hello\n" });
  await testGit(source, ["checkout", "-q", "-b", branch]);
  const head = await commitFile(source, "work.txt", "earlier turn\n");
  return { source, head, branch, pack: await packOf(source, [head]) };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

describe("moving a branch through the sidecar", () => {
  it("round-trips a branch: receives the history, saves the work, packs back only the new commit's objects", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { source, head, branch, pack } = await sourceBranch();

    expect(await sidecar.client.haves()).toEqual({ commits: [], borrows: false });
    expect(await sidecar.client.receiveBranch(branch, head, streamOf(pack))).toEqual({ head, branch });
    expect(await sidecar.client.health()).toMatchObject({ head, branch });
    expect(await sidecar.client.readFile("work.txt")).toBe("earlier turn\n");
    expect(await sidecar.client.haves()).toEqual({ commits: [head], borrows: false });

    await sidecar.client.writeFile("agent.txt", "written by the agent\n");
    const saved = await sidecar.client.saveBranch(branch, head, "Agent turn 2");
    expect(saved).toMatchObject({ base: head, committed: true, rewritten: false, previous: { head, branch } });
    expect(await sidecar.client.health()).toMatchObject({ head: saved.head, branch });

    const back = await collect(await sidecar.client.packObjects(saved.head, [head]));
    // The new commit, its root tree and the new file: nothing of the earlier history.
    expect(objectsIn(back)).toBe(3);
    await gitBuffer(["index-pack", "--stdin", "--fix-thin"], { cwd: source, env: TEST_GIT_ENV, input: back });
    expect(await testGit(source, ["show", `${saved.head}:agent.txt`])).toBe("written by the agent");
    expect(await testGit(source, ["log", "-1", "--format=%s|%an|%P", saved.head])).toBe(
      `Agent turn 2|Umbra Agent|${head}`,
    );
  });

  it("receives a newer history as a thin pack of only the commits the workspace lacks", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { source, head, branch, pack } = await sourceBranch();
    await sidecar.client.receiveBranch(branch, head, streamOf(pack));
    const tip = await commitFile(source, "later.txt", "later\n");
    const newer = await packOf(source, [tip, ...(await sidecar.client.haves()).commits.map((sha) => `^${sha}`)]);
    expect(objectsIn(newer)).toBe(3);
    expect(await sidecar.client.receiveBranch(branch, tip, streamOf(newer))).toEqual({ head: tip, branch });
    expect(await sidecar.client.readFile("later.txt")).toBe("later\n");
    expect(await sidecar.client.readFile("work.txt")).toBe("earlier turn\n");
  });

  it("saves without a new commit when the workspace is clean", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { head, branch, pack } = await sourceBranch();
    await sidecar.client.receiveBranch(branch, head, streamOf(pack));
    expect(await sidecar.client.saveBranch(branch, head, "nothing")).toMatchObject({ head, committed: false });
  });

  it("gives a save's commit as long as a transfer, not the limit of a short request", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { head, branch, pack } = await sourceBranch();
    await sidecar.client.receiveBranch(branch, head, streamOf(pack));
    // Committing 64 MiB of random bytes takes far longer than 100 ms.
    expect((await sidecar.client.runCommand("head -c 67108864 /dev/urandom > big.bin")).exitCode).toBe(0);
    const impatient = new SidecarClient({ endpoint: sidecar.endpoint, token: sidecar.token, timeoutMs: 100 });
    const saved = await impatient.saveBranch(branch, head, "large file");
    expect(saved).toMatchObject({ base: head, committed: true });
  }, 60_000);

  it("saves an agent's own branch onto the task branch and leaves the workspace on the task branch", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { head, branch, pack } = await sourceBranch();
    await sidecar.client.receiveBranch(branch, head, streamOf(pack));
    const agent = await sidecar.client.runCommand(
      "git checkout -q -b feature && echo feature > feature.txt && git add -A && git commit -q -m feature",
    );
    expect(agent.exitCode).toBe(0);
    const saved = await sidecar.client.saveBranch(branch, head, "save");
    expect(saved).toMatchObject({ committed: false, rewritten: false, previous: { branch: "feature" } });
    expect(await sidecar.client.health()).toMatchObject({ head: saved.head, branch });
    expect(await sidecar.client.readFile("feature.txt")).toBe("feature\n");
  });

  it("refuses to receive over uncommitted work", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { head, branch, pack } = await sourceBranch();
    await sidecar.client.receiveBranch(branch, head, streamOf(pack));
    await sidecar.client.writeFile("unsaved.txt", "precious\n");
    expect(await rejection(sidecar.client.receiveBranch(branch, head, streamOf(pack)))).toMatchObject({
      status: 409,
      code: "WORKSPACE_DIRTY",
    });
    expect(await sidecar.client.readFile("unsaved.txt")).toBe("precious\n");
  });

  it("refuses to receive a history that lacks commits the workspace's branch has", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { head, branch, pack } = await sourceBranch();
    await sidecar.client.receiveBranch(branch, head, streamOf(pack));
    await sidecar.client.writeFile("committed.txt", "not yet saved anywhere\n");
    await sidecar.client.commitAll("local work");
    const error = await rejection(sidecar.client.receiveBranch(branch, head, streamOf(pack)));
    expect(error).toBeInstanceOf(SidecarError);
    expect(error).toMatchObject({ status: 409, code: "WORKSPACE_DIVERGED" });
  });

  it("refuses a body that is not a pack, and a pack whose history the workspace cannot complete", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { source, head, branch } = await sourceBranch();
    expect(
      await rejection(sidecar.client.receiveBranch(branch, head, streamOf(Buffer.from("not a pack")))),
    ).toMatchObject({ status: 400, code: "BAD_PACK" });

    const tip = await commitFile(source, "later.txt", "later\n");
    const onlyTheNewCommit = await packOf(source, [tip, `^${head}`]);
    const other = await sidecarOnEmptyWorkspace();
    expect(await rejection(other.client.receiveBranch(branch, tip, streamOf(onlyTheNewCommit)))).toMatchObject({
      status: 400,
      code: "BAD_PACK",
    });
  });

  it("borrows the upstream history from a directory it is offered: only the task's commits travel, and it saves as before", async () => {
    const { source, head, branch } = await sourceBranch();
    const upstream = await testGit(source, ["rev-parse", "main"]);
    // A borrowed-objects directory as the server makes it: a pack of main's history and its tips file.
    const borrowed = await tempDir();
    await mkdir(join(borrowed, "objects", "pack"), { recursive: true });
    await gitBuffer(["pack-objects", "--revs", "-q", join(borrowed, "objects", "pack", "pack")], {
      cwd: source,
      env: TEST_GIT_ENV,
      input: `${upstream}\n`,
    });
    await writeFile(join(borrowed, "tips"), `${upstream}\n`);

    const sidecar = await sidecarOnEmptyWorkspace();
    expect(await sidecar.client.haves(borrowed)).toEqual({ commits: [], borrows: true });
    const taskOnly = await packOf(source, [head, `^${upstream}`]);
    expect(objectsIn(taskOnly)).toBe(3);
    expect(await sidecar.client.receiveBranch(branch, head, streamOf(taskOnly), borrowed)).toEqual({ head, branch });
    expect(await sidecar.client.readFile("README.md")).toBe("hello\n");
    expect(await readFile(join(sidecar.workspace, ".git", "objects", "info", "alternates"), "utf8")).toBe(
      `${join(borrowed, "objects")}\n`,
    );
    // The borrowed tip is a have from now on, and the agent's git reads the borrowed history.
    expect((await sidecar.client.haves(borrowed)).commits.sort()).toEqual([head, upstream].sort());
    expect((await sidecar.client.runCommand("git log --format=%s > log.txt")).exitCode).toBe(0);
    expect(await sidecar.client.readFile("log.txt")).toBe("add work.txt\ninitial\n");
    await sidecar.client.runCommand("rm log.txt");

    await sidecar.client.writeFile("agent.txt", "written by the agent\n");
    const saved = await sidecar.client.saveBranch(branch, head, "Agent turn 2");
    const back = await collect(await sidecar.client.packObjects(saved.head, [head]));
    expect(objectsIn(back)).toBe(3);
  });

  it("receives the whole history when the offered directory cannot be read, and never borrows into an existing repository", async () => {
    const { head, branch, pack } = await sourceBranch();
    const sidecar = await sidecarOnEmptyWorkspace();
    const missing = join(await tempDir(), "not-there");
    expect(await sidecar.client.haves(missing)).toEqual({ commits: [], borrows: false });
    await sidecar.client.receiveBranch(branch, head, streamOf(pack), missing);
    expect(existsSync(join(sidecar.workspace, ".git", "objects", "info", "alternates"))).toBe(false);

    const borrowed = await tempDir();
    await mkdir(join(borrowed, "objects", "pack"), { recursive: true });
    expect(await sidecar.client.haves(borrowed)).toEqual({ commits: [head], borrows: false });
    await sidecar.client.receiveBranch(branch, head, streamOf(pack), borrowed);
    expect(existsSync(join(sidecar.workspace, ".git", "objects", "info", "alternates"))).toBe(false);

    for (const bad of ["relative/dir", "/a/../b", "/a\nb", "/a//b"]) {
      expect(await rejection(sidecar.client.haves(bad))).toMatchObject({ status: 400, code: "VALIDATION_ERROR" });
      expect(await rejection(sidecar.client.receiveBranch(branch, head, streamOf(pack), bad))).toMatchObject({
        status: 400,
        code: "VALIDATION_ERROR",
      });
    }
  });

  it("refuses to save onto a last saved commit the workspace does not have, and to pack an unknown commit", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { head, branch, pack } = await sourceBranch();
    await sidecar.client.receiveBranch(branch, head, streamOf(pack));
    const unknown = "1234567890123456789012345678901234567890";
    expect(await rejection(sidecar.client.saveBranch(branch, unknown, "save"))).toMatchObject({
      status: 409,
      code: "BASE_MISSING",
    });
    expect(await rejection(sidecar.client.packObjects(unknown, []))).toMatchObject({
      status: 409,
      code: "UNKNOWN_COMMIT",
    });
  });

  it("packs straight into the caller's git through a stdin feed; a refused or unanswered feed fails as the client's request does", async () => {
    await startSpawnHost();
    try {
      const sidecar = await sidecarOnEmptyWorkspace();
      const { source, head, branch, pack } = await sourceBranch();
      await sidecar.client.receiveBranch(branch, head, streamOf(pack));
      await sidecar.client.writeFile("fed.txt", "through the feed\n");
      const saved = await sidecar.client.saveBranch(branch, head, "Agent turn 2");

      const indexed = await runGit(["index-pack", "--stdin", "--fix-thin"], {
        cwd: source,
        env: TEST_GIT_ENV,
        stdinFeed: sidecar.client.packObjectsFeed(saved.head, [head]),
      });
      expect(indexed.exitCode).toBe(0);
      expect(indexed.feed?.failure).toBeNull();
      // The header of a pack of the new commit, its root tree and the new file.
      expect(indexed.feed?.head.subarray(0, 12)).toEqual(Buffer.from([...Buffer.from("PACK"), 0, 0, 0, 2, 0, 0, 0, 3]));
      expect(await testGit(source, ["show", `${saved.head}:fed.txt`])).toBe("through the feed");

      const unknown = "1234567890123456789012345678901234567890";
      const refused = await runGit(["index-pack", "--stdin"], {
        cwd: source,
        env: TEST_GIT_ENV,
        stdinFeed: sidecar.client.packObjectsFeed(unknown, []),
      });
      expect(refused.inputError).toBeInstanceOf(FeedError);
      expect(sidecar.client.feedError(refused.inputError as FeedError)).toMatchObject({
        status: 409,
        code: "UNKNOWN_COMMIT",
      });

      const gone = new SidecarClient({ endpoint: `unix:${join(source, "no-sidecar.sock")}`, token: "t" });
      const unanswered = await runGit(["index-pack", "--stdin"], {
        cwd: source,
        env: TEST_GIT_ENV,
        stdinFeed: gone.packObjectsFeed(head, []),
      });
      const error = gone.feedError(unanswered.inputError as FeedError);
      expect(error).toBeInstanceOf(SidecarError);
      expect(error).toMatchObject({ status: 0, code: "UNREACHABLE" });
    } finally {
      await stopSpawnHost();
    }
  });

  it("refuses to save onto a name git does not accept as a branch, leaving the workspace as it was", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { head, branch, pack } = await sourceBranch();
    await sidecar.client.receiveBranch(branch, head, streamOf(pack));
    await sidecar.client.writeFile("pending.txt", "pending\n");
    for (const bad of ["umbra/..x", "umbra/x.lock", "umbra//x", "/umbra"]) {
      expect(await rejection(sidecar.client.saveBranch(bad, head, "save"))).toMatchObject({
        status: 400,
        code: "VALIDATION_ERROR",
      });
    }
    expect(await sidecar.client.health()).toMatchObject({ head, branch });
    expect(await sidecar.client.readFile("pending.txt")).toBe("pending\n");
  });

  it("commits through /git/commit and reports when there was nothing to commit", async () => {
    const sidecar = await sidecarOnEmptyWorkspace();
    const { head, branch, pack } = await sourceBranch();
    await sidecar.client.receiveBranch(branch, head, streamOf(pack));
    expect(await sidecar.client.commitAll("nothing")).toEqual({ sha: head, committed: false });
    await sidecar.client.writeFile("x.txt", "x\n");
    const result = await sidecar.client.commitAll("something");
    expect(result.committed).toBe(true);
    expect((await sidecar.client.health()).head).toBe(result.sha);
  });
});
