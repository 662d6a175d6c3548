/**
 * One contract for every WorkspaceManager and its ToolExecutor: local
 * worktrees, remote sandboxes from the `process` provider (real sidecar
 * processes, under bubblewrap when present), and remote pods from the
 * `kubernetes` provider against a fake API server whose kubelet runs the real
 * sidecar bundle. The same tests run against all three.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Database, openDatabase, type TaskRow } from "@repo/db";
import { getStepsForMode, type InitStatus, type TaskMode } from "@repo/types";
import {
  isWorkspaceArchiver,
  type ToolExecutor,
  type WorkspaceArchiver,
  WorkspaceOperationError,
  WorkspacePathError,
} from "@repo/workspace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeKubernetes, type RunContainer, startFakeKubernetes } from "../../../test/support/fake-kubernetes";
import { createRepo, git, tempDir } from "../../../test/support/git";
import { ensureSidecarBundle } from "../../sidecar/build";
import { WorkspaceSaveError } from "../src/errors";
import { AgentStateDirs } from "../src/execution/agent-state";
import { LocalWorkspaceManager } from "../src/execution/local/local-workspace-manager";
import { RemoteWorkspaceManager } from "../src/execution/remote/remote-workspace-manager";
import type { WorkspaceManager } from "../src/execution/types";
import { KubernetesVmProvider } from "../src/execution/vm/kubernetes/kubernetes-provider";
import { ProcessVmProvider } from "../src/execution/vm/process/process-provider";
import { createLogger } from "../src/logger";
import { RepositoryStore } from "../src/repository/repository-store";
import { systemClock } from "../src/utils/clock";
import { SecretBox } from "../src/utils/secret-box";
import { createTaskStatusStore, type TaskStatusStore } from "../src/utils/task-status";

const log = createLogger("silent");

/** The fake kubelet's container runtime: the real sidecar bundle on the pod's loopback address. */
function sidecarContainer(bundle: string): RunContainer {
  return async ({ env, podIP, port }) => {
    // The pod's volumes: its workspace, its agent state and its /tmp, each a directory of its own.
    const pod = mkdtempSync(join(tmpdir(), "umbra-pod-"));
    const workspace = join(pod, "workspace");
    mkdirSync(join(pod, "tmp"));
    const child: ChildProcess = spawn(process.execPath, [bundle], {
      env: {
        PATH: process.env.PATH,
        HOME: pod,
        TMPDIR: join(pod, "tmp"),
        ...env,
        SIDECAR_HOST: podIP,
        SIDECAR_PORT: String(port),
        SIDECAR_WORKSPACE: workspace,
        SIDECAR_AGENT_HOME: join(pod, "agent-state"),
      },
      stdio: ["ignore", "pipe", "ignore"],
    });
    await new Promise<void>((resolve, reject) => {
      child.once("error", reject);
      child.stdout?.once("data", () => resolve());
    });
    const exited = new Promise<{ exitCode: number }>((resolve) =>
      child.once("exit", (code) => resolve({ exitCode: code ?? 1 })),
    );
    return {
      exited,
      async stop() {
        child.kill("SIGKILL");
        await exited;
        rmSync(pod, { recursive: true, force: true });
      },
    };
  };
}

interface Subject {
  name: string;
  mode: TaskMode;
  make(dataDir: string, database: Database): Promise<WorkspaceManager & { close?(): Promise<void> }>;
}

let fakeKubernetes: FakeKubernetes | undefined;

const subjects: Subject[] = [
  {
    name: "local",
    mode: "local",
    make: async (dataDir) =>
      new LocalWorkspaceManager(
        new RepositoryStore(join(dataDir, "repos")),
        join(dataDir, "workspaces"),
        new AgentStateDirs(join(dataDir, "agent-state")),
      ),
  },
  {
    name: "remote/process",
    mode: "remote",
    make: async (dataDir, database) =>
      new RemoteWorkspaceManager({
        db: database.db,
        clock: systemClock,
        store: new RepositoryStore(join(dataDir, "repos")),
        provider: new ProcessVmProvider({ dataDir, sidecarBundlePath: await ensureSidecarBundle(), logger: log }),
        secrets: SecretBox.withKey(randomBytes(32)),
        agentState: new AgentStateDirs(join(dataDir, "agent-state")),
        readyTimeoutMs: 20_000,
        log,
      }),
  },
  {
    name: "remote/kubernetes",
    mode: "remote",
    make: async (dataDir, database) => {
      fakeKubernetes = await startFakeKubernetes({ runContainer: sidecarContainer(await ensureSidecarBundle()) });
      return new RemoteWorkspaceManager({
        db: database.db,
        clock: systemClock,
        store: new RepositoryStore(join(dataDir, "repos")),
        provider: new KubernetesVmProvider({
          kubeConfig: fakeKubernetes.kubeConfig(),
          pollIntervalMs: 20,
          logger: log,
        }),
        secrets: SecretBox.withKey(randomBytes(32)),
        agentState: new AgentStateDirs(join(dataDir, "agent-state")),
        readyTimeoutMs: 20_000,
        log,
      });
    },
  },
];

/** The stdout of a command in the workspace. */
async function output(executor: ToolExecutor, command: string): Promise<string> {
  let out = "";
  await executor.runCommand(command, {
    onOutput: (stream, text) => {
      if (stream === "stdout") out += text;
    },
  });
  return out;
}

describe.each(subjects)("workspace contract: $name", (subject) => {
  let database: Database;
  let status: TaskStatusStore;
  let manager: WorkspaceManager;
  let task: TaskRow;
  const dataDir = tempDir("umbra-contract-");
  const repo = createRepo({ "README.md": "# Contract\n", "src/main.txt": "alpha\nbeta\n" });

  /** Runs the mode's provisioning steps (the engine's job, minus setup and indexing) and leaves the task ACTIVE. */
  async function provision(): Promise<TaskRow> {
    if (task.status !== "INITIALIZING") task = (await status.beginReinitialization(task.id)) ?? task;
    for (const step of getStepsForMode(subject.mode)) {
      task = (await status.setInitStatus(task.id, step as InitStatus)) ?? task;
      if (step === "INSTALL_DEPENDENCIES" || step === "INDEX_REPOSITORY") continue;
      const context = { task, signal: new AbortController().signal, log, output: () => {} };
      const patch = await manager.runStep(step, context);
      if (patch && Object.keys(patch).length > 0) task = (await status.updateTaskFields(task.id, patch)) ?? task;
    }
    task = (await status.setInitStatus(task.id, "ACTIVE")) ?? task;
    return task;
  }

  /** The task's executor, which every backend makes an archiver as well. */
  async function archiver(): Promise<ToolExecutor & WorkspaceArchiver> {
    const executor = await manager.executor(task);
    if (!isWorkspaceArchiver(executor)) throw new Error("the executor cannot move archives");
    return executor;
  }

  beforeAll(async () => {
    database = await openDatabase();
    status = createTaskStatusStore({ db: database.db, clock: systemClock, cleanupDelayMs: 600_000 });
    manager = await subject.make(dataDir, database);
    task = await status.createTask({
      id: crypto.randomUUID(),
      title: "contract",
      mode: subject.mode,
      repoUrl: repo,
      branch: RepositoryStore.branchFor("x"),
    });
    task = (await status.updateTaskFields(task.id, { branch: RepositoryStore.branchFor(task.id) })) ?? task;
    await provision();
  });

  afterAll(async () => {
    await manager.teardown(task).catch(() => undefined);
    await manager.close?.();
    await fakeKubernetes?.close();
    fakeKubernetes = undefined;
    await database.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("provisions the task branch at the base commit and answers as alive", async () => {
    expect(task.baseCommitSha).toBe(git(repo, "rev-parse", "HEAD"));
    expect(task.baseBranch).toBe("main");
    expect(await manager.isAlive(task)).toBe(true);
    const executor = await manager.executor(task);
    expect(await executor.readFile("src/main.txt")).toBe("alpha\nbeta\n");
  });

  it("reads, writes, edits, lists and greps files", async () => {
    const executor = await manager.executor(task);
    await executor.writeFile("notes/a.txt", "one\ntwo\n");
    expect(await executor.editFile("notes/a.txt", "two", "three")).toEqual({ replacements: 1 });
    expect(await executor.readFile("notes/a.txt")).toBe("one\nthree\n");
    const entries = await executor.listDir("notes");
    expect(entries.map((e) => [e.name, e.type])).toEqual([["a.txt", "file"]]);
    const matches = await executor.grep("three|beta");
    expect(matches.map((m) => [m.path, m.line]).sort()).toEqual([
      ["notes/a.txt", 2],
      ["src/main.txt", 2],
    ]);
  });

  it("refuses paths outside the workspace", async () => {
    const executor = await manager.executor(task);
    await expect(executor.readFile("../../../../etc/passwd")).rejects.toBeInstanceOf(WorkspacePathError);
    await expect(executor.writeFile("/tmp/outside.txt", "x")).rejects.toBeInstanceOf(WorkspacePathError);
    await executor.runCommand("ln -s /etc escape");
    await expect(executor.readFile("escape/hostname")).rejects.toBeInstanceOf(WorkspacePathError);
    await executor.runCommand("rm escape");
  });

  it("runs commands in the workspace with streamed output and exit codes", async () => {
    const executor = await manager.executor(task);
    let out = "";
    const result = await executor.runCommand("cat README.md; echo err >&2; exit 4", {
      onOutput: (_stream, text) => {
        out += text;
      },
    });
    expect(result.exitCode).toBe(4);
    expect(out).toContain("# Contract");
    expect(out).toContain("err");
  });

  it("stops a command when its signal aborts", async () => {
    const executor = await manager.executor(task);
    const controller = new AbortController();
    const started = Date.now();
    const running = executor.runCommand("sleep 30", { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    const result = await running;
    expect(result.aborted).toBe(true);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("packs workspace paths into an archive on this machine and unpacks it back, files, modes and links", async () => {
    const executor = await archiver();
    await executor.runCommand(
      "mkdir -p deps/bin && printf 'lib\\n' > deps/lib.txt && printf '#!/bin/sh\\necho tool ran\\n' > deps/bin/tool" +
        " && chmod +x deps/bin/tool && ln -s lib.txt deps/link && printf 'one\\n' > extra.log",
    );
    const file = join(dataDir, `deps-${subject.name.replace("/", "-")}.tar`);
    const bytes = await executor.packPaths(["deps/", "extra.log"], file);
    expect(bytes).toBe(statSync(file).size);
    await executor.runCommand("rm -rf deps extra.log");
    await executor.unpackArchive(file);
    expect(await executor.readFile("deps/lib.txt")).toBe("lib\n");
    expect(await executor.readFile("extra.log")).toBe("one\n");
    expect(await output(executor, "./deps/bin/tool && readlink deps/link")).toBe("tool ran\nlib.txt\n");
    await executor.runCommand("rm -rf deps extra.log");
    rmSync(file);
  });

  it("lists tracked files matching pathspecs with their blob ids, and its root as commands see it, without a command", async () => {
    const executor = await archiver();
    await executor.runCommand(
      "mkdir -p web && printf 'lock one\\n' > web/package-lock.json && printf 'lock two\\n' > package-lock.json" +
        " && git add web/package-lock.json && printf 'untracked\\n' > yarn.lock",
    );
    const { root, records } = await executor.trackedFiles([":(glob)**/package-lock.json", ":(glob)**/yarn.lock"]);
    expect(root).toBe((await output(executor, "pwd -P")).trim());
    // `git hash-object` of "lock one\n": only the tracked file is listed, from the index.
    expect(records).toBe("100644 d177639a358feb0608b2024ce5f0a76f74861c53 0\tweb/package-lock.json\0");
    await executor.runCommand("git rm -q --cached web/package-lock.json && rm -rf web package-lock.json yarn.lock");
  });

  it("moves an unpacked tree in by renaming only where it lives on the server's own filesystem", async () => {
    const executor = await archiver();
    if (subject.name !== "local") {
      // A sandbox cannot see the server's disk: it only unpacks archives.
      expect(executor.adoptTree).toBeUndefined();
      return;
    }
    const tree = (at: string) => {
      mkdirSync(join(at, "deps", "bin"), { recursive: true });
      writeFileSync(join(at, "deps", "bin", "tool"), "#!/bin/sh\necho tool ran\n", { mode: 0o755 });
      mkdirSync(join(at, "nested", "cache"), { recursive: true });
      writeFileSync(join(at, "nested", "cache", "entry"), "cached\n");
      return at;
    };
    const staged = tree(mkdtempSync(join(dataDir, "staged-")));
    expect(await executor.adoptTree!(staged, ["deps/", "nested/cache/"])).toBe(true);
    expect(await output(executor, "./deps/bin/tool && cat nested/cache/entry")).toBe("tool ran\ncached\n");
    expect(existsSync(join(staged, "deps"))).toBe(false);

    // A path already in the workspace: nothing moves.
    const second = tree(mkdtempSync(join(dataDir, "staged-")));
    await executor.runCommand("rm -rf nested");
    expect(await executor.adoptTree!(second, ["nested/cache/", "deps/"])).toBe(false);
    expect(existsSync(join(second, "nested", "cache", "entry"))).toBe(true);
    expect(await output(executor, "test -e nested && echo there || echo absent")).toBe("absent\n");

    // Another filesystem (tmpfs): renaming cannot work there.
    if (existsSync("/dev/shm") && statSync("/dev/shm").dev !== statSync(dataDir).dev) {
      const elsewhere = tree(mkdtempSync(join("/dev/shm", "umbra-staged-")));
      try {
        expect(await executor.adoptTree!(elsewhere, ["nested/cache/"])).toBe(false);
      } finally {
        rmSync(elsewhere, { recursive: true, force: true });
      }
    }
    await expect(executor.adoptTree!(second, ["../outside"])).rejects.toBeInstanceOf(WorkspacePathError);
    await executor.runCommand("rm -rf deps nested");
  });

  it("refuses to pack a path outside the workspace, and an archive past its size limit", async () => {
    const executor = await archiver();
    const file = join(dataDir, `refused-${subject.name.replace("/", "-")}.tar`);
    await expect(executor.packPaths(["../outside"], file)).rejects.toBeInstanceOf(WorkspacePathError);
    await executor.runCommand("ln -s /etc escape && head -c 50000 /dev/zero > big.bin");
    await expect(executor.packPaths(["escape/hostname"], file)).rejects.toBeInstanceOf(WorkspacePathError);
    const tooLarge = await executor.packPaths(["big.bin"], file, { limitBytes: 10_000 }).catch((error) => error);
    expect(tooLarge).toBeInstanceOf(WorkspaceOperationError);
    expect((tooLarge as WorkspaceOperationError).code).toBe("TOO_LARGE");
    await executor.runCommand("rm -f escape big.bin");
    rmSync(file, { force: true });
  });

  it("saves committed and uncommitted work to the repository store", async () => {
    const executor = await manager.executor(task);
    await executor.writeFile("saved.txt", "kept\n");
    const head = await manager.saveWork(task, "save for the contract");
    const store = new RepositoryStore(join(dataDir, "repos"));
    expect(await store.branchHead(repo, task.branch!)).toBe(head);
    const diff = await store.diff(repo, task.baseCommitSha!, task.branch!);
    expect(diff.files.map((f) => f.path).sort()).toEqual(["notes/a.txt", "saved.txt"]);
  });

  it("saves a task branch that has no saved-head record on top of its branch head, and records the result", async () => {
    const store = new RepositoryStore(join(dataDir, "repos"));
    const mirror = store.mirrorPath(repo);
    const before = await store.branchHead(repo, task.branch!);
    git(mirror, "update-ref", "-d", RepositoryStore.savedRef(task.branch!));
    const executor = await manager.executor(task);
    await executor.writeFile("unrecorded.txt", "saved anyway\n");
    const head = await manager.saveWork(task, "save without a record");
    expect(git(mirror, "rev-parse", `${head}^`)).toBe(before);
    expect(git(mirror, "show", `${head}:unrecorded.txt`)).toBe("saved anyway");
    expect(await store.branchHead(repo, task.branch!)).toBe(head);
    expect(git(mirror, "rev-parse", RepositoryStore.savedRef(task.branch!))).toBe(head);
  });

  /** What the workspace has checked out and whether it is clean, as the agent would see it. */
  async function checkedOut(): Promise<string> {
    const executor = await manager.executor(task);
    let out = "";
    await executor.runCommand("git symbolic-ref HEAD && git rev-parse HEAD && git status --porcelain", {
      onOutput: (stream, text) => {
        if (stream === "stdout") out += text;
      },
    });
    return out.trim();
  }

  it("carries an agent's new branch, detached HEAD and uncommitted files onto the task branch", async () => {
    const store = new RepositoryStore(join(dataDir, "repos"));
    const before = await store.savedHead(repo, task.branch!);
    const executor = await manager.executor(task);
    const habits = await executor.runCommand(
      "git checkout -q -b feature-a && echo a > habit-a.txt && git add -A && git commit -q -m habit-a && " +
        "git checkout -q --detach && echo b > habit-b.txt && git add -A && git commit -q -m habit-b && echo c > habit-c.txt",
    );
    expect(habits.exitCode).toBe(0);
    const head = await manager.saveWork(task, "save habits");
    const mirror = store.mirrorPath(repo);
    expect(await store.branchHead(repo, task.branch!)).toBe(head);
    expect(git(mirror, "log", "--format=%s", `${before}..${head}`)).toBe("save habits\nhabit-b\nhabit-a");
    expect(git(mirror, "show", `${head}:habit-c.txt`)).toBe("c");
    expect(await checkedOut()).toBe(`refs/heads/${task.branch}\n${head}`);
  });

  it("puts amended and rebased work on the task branch and keeps every saved commit", async () => {
    const store = new RepositoryStore(join(dataDir, "repos"));
    const mirror = store.mirrorPath(repo);
    const before = await store.savedHead(repo, task.branch!);
    const executor = await manager.executor(task);
    const run = async (command: string) => expect((await executor.runCommand(command)).exitCode).toBe(0);

    await run("echo one > amend.txt && git add -A && git commit -q -m one");
    const first = await manager.saveWork(task, "save one");
    await run("echo two > amend.txt && git add -A && git commit -q --amend -m one-amended");
    const second = await manager.saveWork(task, "save amend");
    expect(git(mirror, "rev-parse", `${second}^`)).toBe(first);
    expect(git(mirror, "show", `${second}:amend.txt`)).toBe("two");

    await run(
      `git checkout -q -b side ${before} && echo side > side.txt && git add -A && git commit -q -m side && ` +
        `git checkout -q ${task.branch} && git rebase -q side`,
    );
    const third = await manager.saveWork(task, "save rebase");
    expect(git(mirror, "rev-parse", `${third}^`)).toBe(second);
    expect(git(mirror, "show", `${third}:side.txt`)).toBe("side");
    expect(git(mirror, "show", `${third}:amend.txt`)).toBe("two");
    expect(git(mirror, "merge-base", "--is-ancestor", first, third)).toBe("");
    expect(await store.branchHead(repo, task.branch!)).toBe(third);
    expect(await checkedOut()).toBe(`refs/heads/${task.branch}\n${third}`);
  });

  it("reports a save that cannot complete as a WorkspaceSaveError with its reason, and saves once it can", async () => {
    const executor = await manager.executor(task);
    await executor.writeFile("pending.txt", "pending\n");
    expect((await executor.runCommand("mv .git .git-away")).exitCode).toBe(0);
    const failed = await manager.saveWork(task, "save without a repository").catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(WorkspaceSaveError);
    expect(failed).toMatchObject({ code: "WORKSPACE_BROKEN", retryable: false });
    expect((failed as Error).message).toMatch(/no longer a git repository/);

    expect((await executor.runCommand("mv .git-away .git")).exitCode).toBe(0);
    const head = await manager.saveWork(task, "save pending");
    const store = new RepositoryStore(join(dataDir, "repos"));
    expect(git(store.mirrorPath(repo), "show", `${head}:pending.txt`)).toBe("pending");
  });

  it("tears down idempotently; a new workspace restores the saved work", async () => {
    await manager.teardown(task);
    expect(await manager.isAlive(task)).toBe(false);
    await manager.teardown(task);
    expect(await manager.saveWork(task, "nothing to save from").catch((error: unknown) => error)).toMatchObject({
      name: "WorkspaceSaveError",
      code: "WORKSPACE_MISSING",
    });
    await status.startTurn(task.id);
    await status.endTurn(task.id, "COMPLETED", null);
    task = (await status.setInitStatus(task.id, "INACTIVE")) ?? task;
    await provision();
    const executor = await manager.executor(task);
    expect(await executor.readFile("saved.txt")).toBe("kept\n");
    expect(await executor.readFile("notes/a.txt")).toBe("one\nthree\n");
    if (subject.mode === "local") expect(existsSync(join(dataDir, "workspaces", task.id))).toBe(true);
  });

  it("keeps the agent's state outside the workspace, uncommitted, across a teardown", async () => {
    const executor = await manager.executor(task);
    const home = await manager.agentHome(task);
    const written = await executor.runCommand(
      'mkdir -p "$STATE/.claude" && echo turn-1 > "$STATE/.claude/session.jsonl"',
      {
        env: { STATE: home },
      },
    );
    expect(written.exitCode).toBe(0);
    await manager.saveWork(task, "save with the agent's state");
    await manager.teardown(task);
    await status.startTurn(task.id);
    await status.endTurn(task.id, "COMPLETED", null);
    task = (await status.setInitStatus(task.id, "INACTIVE")) ?? task;
    await provision();

    let read = "";
    const again = await manager.executor(task);
    const result = await again.runCommand('cat "$STATE/.claude/session.jsonl"', {
      env: { STATE: await manager.agentHome(task) },
      onOutput: (_stream, text) => {
        read += text;
      },
    });
    expect([result.exitCode, read]).toEqual([0, "turn-1\n"]);
    const store = new RepositoryStore(join(dataDir, "repos"));
    const diff = await store.diff(repo, task.baseCommitSha!, task.branch!);
    // The earlier tests of this workspace left their files; none of the agent's state is among them.
    const paths = diff.files.map((f) => f.path);
    expect(paths).toContain("saved.txt");
    expect(paths.filter((path) => path.includes(".claude") || path.includes("session.jsonl"))).toEqual([]);
  });
});
