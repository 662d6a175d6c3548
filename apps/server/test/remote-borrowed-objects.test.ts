/**
 * Real sandboxes borrowing a repository's upstream history: a new sandbox is
 * sent only the task's own commits (counted in the sandbox's own objects),
 * reads the rest from the store's borrowed-objects directory, cannot write
 * into it, and cannot reach another task's saved work through it.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { TaskRow } from "@repo/db";
import type { ToolExecutor } from "@repo/workspace";
import { afterEach, describe, expect, it } from "vitest";
import { createRepo, tempDir } from "../../../test/support/git";
import { processesMentioning } from "../../../test/support/server";
import { capturingLogger, openWorkspaceHarness, processRemoteManager } from "../../../test/support/workspace-harness";
import { findOnPath } from "../src/execution/vm/process/bubblewrap";
import { RepositoryStore } from "../src/repository/repository-store";

const HAS_BWRAP = findOnPath("bwrap") !== null;
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setUp() {
  const dataDir = tempDir("umbra-borrow-");
  const store = new RepositoryStore(join(dataDir, "repos"));
  const { log } = capturingLogger();
  const harness = await openWorkspaceHarness();
  const manager = await processRemoteManager({ db: harness.database.db, store, dataDir, log });
  const tasks: TaskRow[] = [];
  cleanups.push(async () => {
    for (const task of tasks) await manager.teardown(task).catch(() => undefined);
    await manager.close();
    await harness.close();
    const leaked = processesMentioning(dataDir);
    await rm(dataDir, { recursive: true, force: true });
    expect(leaked).toEqual([]);
  });
  const provision = async (task: TaskRow) => {
    if (!tasks.some((known) => known.id === task.id)) tasks.push(task);
    return harness.provision(manager, task);
  };
  return { store, harness, manager, provision };
}

/** What a command prints in the sandbox; fails the test when it fails. */
async function output(executor: ToolExecutor, command: string): Promise<string> {
  const result = await executor.runCommand(`${command} > .out 2>&1; echo "exit $?" >> .out`);
  expect(result.exitCode).toBe(0);
  const text = await executor.readFile(".out");
  await executor.runCommand("rm -f .out");
  return text;
}

/** The objects the sandbox's repository holds itself (loose and packed), not those it borrows. */
async function ownObjects(executor: ToolExecutor): Promise<number> {
  const counts = await output(executor, "git count-objects -v");
  const count = (key: string) => Number(new RegExp(`^${key}: (\\d+)$`, "m").exec(counts)?.[1]);
  return count("count") + count("in-pack");
}

describe("a remote sandbox borrowing the repository's upstream history", () => {
  it("is sent only the task's commits, first and again after its sandbox is gone, and sees the whole history", async () => {
    const upstream = createRepo({ "README.md": "# Borrowed\n", "src/a.txt": "a\n", "src/b.txt": "b\n" });
    cleanups.push(() => rm(upstream, { recursive: true, force: true }));
    const { store, harness, manager, provision } = await setUp();
    let task = await provision(await harness.newTask(upstream, "remote"));
    let executor = await manager.executor(task);

    expect(await ownObjects(executor)).toBe(0);
    expect(await output(executor, "git count-objects -v | grep alternate")).toBe(
      `alternate: ${join(store.borrowedPath(upstream), "objects")}\nexit 0\n`,
    );
    expect(await executor.readFile("src/b.txt")).toBe("b\n");

    await executor.writeFile("work.txt", "the task's work\n");
    const head = await manager.saveWork(task, "Agent turn");
    await manager.teardown(task);
    task = await provision(await harness.markInactive(task));
    executor = await manager.executor(task);

    // The turn's commit, its root tree and work.txt: nothing of the upstream history.
    expect(await ownObjects(executor)).toBe(3);
    expect(await output(executor, "git log --format=%s")).toBe("Agent turn\ninitial commit\nexit 0\n");
    expect(await output(executor, "git rev-parse HEAD")).toBe(`${head}\nexit 0\n`);
    expect(await executor.readFile("work.txt")).toBe("the task's work\n");
  }, 120_000);

  it("is sent the whole history when the borrowed objects cannot be made, and works as before", async () => {
    const upstream = createRepo({ "README.md": "# Whole\n", "src/a.txt": "a\n" });
    cleanups.push(() => rm(upstream, { recursive: true, force: true }));
    const { store, harness, manager, provision } = await setUp();
    // A file where the directory should be: it cannot be made.
    await mkdir(dirname(store.borrowedPath(upstream)), { recursive: true });
    await writeFile(store.borrowedPath(upstream), "in the way\n");

    const task = await provision(await harness.newTask(upstream, "remote"));
    const executor = await manager.executor(task);

    // The commit, the root and src trees, README.md and src/a.txt: all sent.
    expect(await ownObjects(executor)).toBe(5);
    expect(await output(executor, "git count-objects -v | grep -c alternate")).toBe("0\nexit 1\n");
    await executor.writeFile("work.txt", "saved all the same\n");
    const head = await manager.saveWork(task, "Agent turn");
    expect(await store.branchHead(upstream, task.branch!)).toBe(head);
  }, 120_000);

  it("cannot write the borrowed objects, and reaches no other task's saved work through them", async () => {
    const upstream = createRepo({ "README.md": "# Borrowed\n" });
    cleanups.push(() => rm(upstream, { recursive: true, force: true }));
    const { store, harness, manager, provision } = await setUp();
    const other = await provision(await harness.newTask(upstream, "remote"));
    await (await manager.executor(other)).writeFile("secret.txt", "another task's work\n");
    const otherHead = await manager.saveWork(other, "Another task's turn");
    const secretBlob = (await output(await manager.executor(other), "git rev-parse HEAD:secret.txt")).split("\n")[0];

    const task = await provision(await harness.newTask(upstream, "remote"));
    const executor = await manager.executor(task);

    expect(await output(executor, "git cat-file -t HEAD")).toBe("commit\nexit 0\n");
    for (const id of [otherHead, secretBlob]) {
      expect(await output(executor, `git cat-file -e ${id}`)).toMatch(/exit [1-9]/);
    }
    if (HAS_BWRAP) {
      const borrowed = store.borrowedPath(upstream);
      for (const write of [
        `echo x >> ${borrowed}/tips`,
        `touch ${borrowed}/objects/pack/new`,
        `rm -f ${borrowed}/tips`,
      ]) {
        expect(await output(executor, write)).toMatch(/exit [1-9]/);
      }
      expect(await output(executor, `cat ${borrowed}/tips`)).toMatch(/^[0-9a-f]{40}\nexit 0\n$/);
    }
  }, 120_000);
});
