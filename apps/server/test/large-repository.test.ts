/**
 * Repositories of real size through both kinds of workspace: tens of
 * thousands of files and a 40 MB file provision, take a turn, save, and come
 * back whole after the workspace is gone. Transfers between the store and a
 * sandbox stream, and carry only the objects the other side lacks, so the
 * save of a one-line turn sends the same objects whatever the repository's
 * size (counted from the pack that was sent, not timed).
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { TaskRow } from "@repo/db";
import type { TaskMode } from "@repo/types";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { git, tempDir } from "../../../test/support/git";
import { createLargeRepo, EDITED_FILE, type LargeRepo } from "../../../test/support/large-repo";
import { processesMentioning } from "../../../test/support/server";
import {
  capturingLogger,
  type LogLine,
  openWorkspaceHarness,
  processRemoteManager,
  type WorkspaceHarness,
} from "../../../test/support/workspace-harness";
import { AgentStateDirs } from "../src/execution/agent-state";
import { LocalWorkspaceManager } from "../src/execution/local/local-workspace-manager";
import type { WorkspaceManager } from "../src/execution/types";
import { RepositoryStore } from "../src/repository/repository-store";

const MINUTES = 60_000;
const BIG_FILE_BYTES = 40 * 1024 * 1024;
const LARGE = { files: 20_000, fileBytes: 2048, bigFileBytes: BIG_FILE_BYTES };
const SMALL = { files: 20, fileBytes: 2048, bigFileBytes: 0 };

let large: LargeRepo;
let small: LargeRepo;

beforeAll(() => {
  large = createLargeRepo(LARGE);
  small = createLargeRepo(SMALL);
}, 10 * MINUTES);

afterAll(async () => {
  await Promise.all([large, small].map((repo) => repo && rm(repo.path, { recursive: true, force: true })));
}, 10 * MINUTES);

interface Setup {
  harness: WorkspaceHarness;
  manager: WorkspaceManager & { close?(): Promise<void> };
  store: RepositoryStore;
  lines: LogLine[];
  dataDir: string;
}

async function setUp(mode: TaskMode): Promise<Setup> {
  const dataDir = tempDir("umbra-large-");
  const store = new RepositoryStore(join(dataDir, "repos"));
  const { log, lines } = capturingLogger();
  const harness = await openWorkspaceHarness();
  const agentState = new AgentStateDirs(join(dataDir, "agent-state"));
  const manager =
    mode === "local"
      ? new LocalWorkspaceManager(store, join(dataDir, "workspaces"), agentState, log)
      : await processRemoteManager({ db: harness.database.db, store, dataDir, log, agentState });
  return { harness, manager, store, lines, dataDir };
}

async function tearDown(setup: Setup, tasks: TaskRow[]): Promise<void> {
  for (const task of tasks) await setup.manager.teardown(task).catch(() => undefined);
  await setup.manager.close?.();
  await setup.harness.close();
  const leaked = processesMentioning(setup.dataDir);
  await rm(setup.dataDir, { recursive: true, force: true });
  expect(leaked).toEqual([]);
}

function savedEvent(lines: LogLine[], taskId: string): LogLine {
  const saved = lines.filter((line) => line.msg === "workspace.saved" && line.taskId === taskId).at(-1);
  if (!saved) throw new Error(`no workspace.saved line for ${taskId}`);
  return saved;
}

describe.each(["local", "remote"] as const)("a large repository in %s mode", (mode) => {
  it(
    "provisions, takes a turn, saves, and is restored whole after the workspace is gone",
    async () => {
      const setup = await setUp(mode);
      const { harness, manager, store } = setup;
      let task = await harness.newTask(large.path, mode);
      try {
        task = await harness.provision(manager, task);
        const executor = await manager.executor(task);
        const check = `test "$(wc -c < big.bin)" -eq ${BIG_FILE_BYTES} && test "$(git ls-files | wc -l)" -eq ${large.fileCount}`;
        expect((await executor.runCommand(check)).exitCode).toBe(0);

        const turn = await executor.runCommand(
          `echo 'turn one' >> ${EDITED_FILE} && head -c 1048576 /dev/urandom > added.bin`,
        );
        expect(turn.exitCode).toBe(0);
        const head = await manager.saveWork(task, "Umbra turn: one");
        const mirror = store.mirrorPath(large.path);
        expect(await store.branchHead(large.path, task.branch!)).toBe(head);
        expect(git(mirror, "show", `${head}:${EDITED_FILE}`).split("\n").at(-1)).toBe("turn one");
        expect(git(mirror, "cat-file", "-s", `${head}:added.bin`)).toBe("1048576");
        if (mode === "remote") {
          // The commit, the root, src and src/app trees, the edited file and the new one.
          expect(savedEvent(setup.lines, task.id)).toMatchObject({ head, objects: 6 });
        }

        await manager.teardown(task);
        task = await harness.provision(manager, await harness.markInactive(task));
        const again = await manager.executor(task);
        const restored = `test "$(git rev-parse HEAD)" = ${head} && test "$(wc -c < big.bin)" -eq ${BIG_FILE_BYTES} && test "$(git ls-files | wc -l)" -eq ${large.fileCount + 1} && test -z "$(git status --porcelain)"`;
        expect((await again.runCommand(restored)).exitCode).toBe(0);
        expect(await again.readFile(EDITED_FILE)).toMatch(/line 50\nturn one\n$/);
      } finally {
        await tearDown(setup, [task]);
      }
    },
    20 * MINUTES,
  );
});

describe("a one-line turn's save in remote mode", () => {
  it(
    "sends the same few objects on a repository of 20 files and one of 20,000 files with a 40 MB file",
    async () => {
      const setup = await setUp("remote");
      const { harness, manager } = setup;
      const tasks = [await harness.newTask(small.path, "remote"), await harness.newTask(large.path, "remote")];
      try {
        const sent: Record<string, unknown>[] = [];
        for (const created of tasks) {
          const task = await harness.provision(manager, created);
          const executor = await manager.executor(task);
          expect((await executor.runCommand(`echo 'one more line' >> ${EDITED_FILE}`)).exitCode).toBe(0);
          const head = await manager.saveWork(task, "Umbra turn: one line");
          const event = savedEvent(setup.lines, task.id);
          expect(event.head).toBe(head);
          sent.push({ objects: event.objects, committed: event.committed });
        }
        // The commit, the root, src and src/app trees, and the edited file: on both.
        expect(sent).toEqual([
          { objects: 5, committed: true },
          { objects: 5, committed: true },
        ]);
      } finally {
        await tearDown(setup, tasks);
      }
    },
    20 * MINUTES,
  );
});
