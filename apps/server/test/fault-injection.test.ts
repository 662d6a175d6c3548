import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { openDatabase, tasks } from "@repo/db";
import type { DiffResponse, TaskDto } from "@repo/types";
import { eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import {
  createScratchPostgres,
  POSTGRES_ADMIN_URL,
  postgresAvailable,
  type ScratchPostgres,
} from "../../../test/support/databases";
import {
  createLargeRepo,
  createTask,
  DataDirs,
  describeProcessesUnder,
  destroySandboxes,
  followUp,
  freezeSandbox,
  getTask,
  interruptedTurnAtRest,
  listeningSandbox,
  logEvents,
  pollUntilStep,
  resting,
  spinUntil,
  waitForTask,
} from "../../../test/support/faults";
import { createRepo, tempDir } from "../../../test/support/git";
import { type GatedGitServer, serveGatedRepo } from "../../../test/support/git-http";
import { reliabilityCase } from "../../../test/support/reliability";
import {
  branchContains,
  branchFiles,
  processRunning,
  processState,
  readSandboxRecord,
  runningPids,
  sidecarPid,
  taskBranchHead,
} from "../../../test/support/sandbox-probe";
import { processesUnder, settleProcessesUnder, spawnServer } from "../../../test/support/server-process";
import { warmTask } from "../../../test/support/task-states";
import type { WorkspaceManager } from "../src/execution/types";
import { createLogger } from "../src/logger";
import { TaskCleanupService } from "../src/services/task-cleanup";
import { createTaskCore } from "../src/services/task-core";
import { WorkspaceTeardown } from "../src/services/workspace-teardown";
import { ManualClock } from "../src/utils/clock";

const FILE = "fault-injection.test.ts";

const dataDirs = new DataDirs();
afterAll(() => dataDirs.cleanUp());

describe("local mode: SIGKILL of the server", () => {
  const LOCAL_STEPS = ["INACTIVE", "PREPARE_WORKSPACE", "INSTALL_DEPENDENCIES", "INDEX_REPOSITORY", "ACTIVE"];
  let gated: GatedGitServer | undefined;
  afterAll(async () => {
    await gated?.close();
  });

  it("recovers every task: held steps re-run, the interrupted turn is saved and stopped, nothing leaks", async () => {
    const dataDir = dataDirs.create("umbra-fault-local-");
    // The stalled remote is an HTTP server on 127.0.0.1: a loopback repository host, allowed here on purpose.
    const first = await spawnServer({ dataDir, env: { ALLOWED_REPO_HOSTS: "127.0.0.1" } });

    // A task whose first turn is saved before anything goes wrong.
    const saved = await createTask(first, createRepo(), "echo one > one.txt");
    await waitForTask(first, saved.id, (t) => t.status === "COMPLETED", "completed");
    const savedHead = taskBranchHead(dataDir, saved.id)!;
    expect(savedHead).toMatch(/^[0-9a-f]{40}$/);

    // PREPARE_WORKSPACE held: the repository's remote stalls in the middle of the fetch.
    gated = await serveGatedRepo(createRepo({ "README.md": "# gated\n" }));
    const preparing = await createTask(first, gated.url, "echo prepared > prepared.txt");
    await gated.firstRequest;
    expect((await getTask(first, preparing.id)).initStatus).toBe("PREPARE_WORKSPACE");

    // A turn in progress: it has written a file and sleeps.
    const turning = await createTask(first, createRepo(), "echo partial > partial.txt; sleep 30");
    const turningTask = await waitForTask(first, turning.id, (t) => t.status === "RUNNING", "running");
    const workspace = join(dataDir, "workspaces", turningTask.id);
    await waitForTask(
      first,
      turning.id,
      () => processesUnder(workspace).some((p) => p.cmdline.includes("sleep 30")),
      "started its command",
    );

    // The index of a 3,000-file repository, built in the background once the workspace is ready (INDEX_REPOSITORY
    // does not wait for it): killed the moment the API reports the workspace ACTIVE, while the index is written.
    const indexedRepo = createLargeRepo(3000);
    const indexing = await createTask(first, indexedRepo, "echo indexed > indexed.txt");
    await pollUntilStep(first, indexing.id, "ACTIVE", LOCAL_STEPS);
    await first.kill();
    const indexBuiltBeforeKill = logEvents(first, "index.built").some((line) => line.repoUrl === indexedRepo);

    const second = await spawnServer({ dataDir, port: first.port, env: { ALLOWED_REPO_HOSTS: "127.0.0.1" } });
    try {
      await reliabilityCase(
        "fault-injection",
        FILE,
        "local: SIGKILL of a server on the embedded database (PGlite under DATA_DIR) with four tasks in flight",
        async (observe) => {
          const listed = (await second.api<{ tasks: TaskDto[] }>("GET", "/api/tasks")).body.tasks.map((t) => t.id);
          expect(listed.sort()).toEqual([saved.id, preparing.id, turning.id, indexing.id].sort());
          observe("the database opened again on restart with every task of the dead server");
        },
      );
      gated.release();
      await reliabilityCase(
        "fault-injection",
        FILE,
        "local: SIGKILL while PREPARE_WORKSPACE waits on a stalled git remote",
        async (observe) => {
          const task = await waitForTask(second, preparing.id, resting, "came to rest");
          observe(`after restart the initialization re-ran; the task ended ${task.status}/${task.initStatus}`);
          expect([task.status, task.initStatus]).toEqual(["COMPLETED", "ACTIVE"]);
          expect(branchFiles(dataDir, preparing.id)).toContain("prepared.txt");
          observe("its message ran once the remote answered (prepared.txt on the task branch)");
        },
      );
      await reliabilityCase(
        "fault-injection",
        FILE,
        "local: SIGKILL while the index of a 3,000-file repository is built in the background",
        async (observe) => {
          observe(
            indexBuiltBeforeKill
              ? "the index was already complete at the kill (this run did not catch it under way)"
              : "killed with the index under way, the workspace ACTIVE and its first turn starting",
          );
          const task = await waitForTask(second, indexing.id, resting, "came to rest");
          observe(`task at rest ${task.status}/${task.initStatus}`);
          // The turn had ended before the kill, or was interrupted and stopped with its work saved.
          expect(["COMPLETED", "STOPPED"]).toContain(task.status);
          if (task.status === "COMPLETED") expect(branchFiles(dataDir, indexing.id)).toContain("indexed.txt");
          await followUp(second, indexing.id, "echo after > after.txt");
          const after = await waitForTask(second, indexing.id, resting, "finished the follow-up");
          expect(after.status).toBe("COMPLETED");
          expect(branchFiles(dataDir, indexing.id)).toContain("after.txt");
          observe("the database opened again after the kill, and a follow-up ran and was saved");
        },
      );
      await reliabilityCase(
        "fault-injection",
        FILE,
        "local: SIGKILL during an agent turn (`echo partial > partial.txt; sleep 30`)",
        async (observe) => {
          const task = await waitForTask(second, turning.id, resting, "came to rest");
          observe(`turn marked ${task.status} with errorMessage "${task.errorMessage}"`);
          expect(task.status).toBe("STOPPED");
          expect(task.errorMessage).toMatch(/server stopped while the agent was working/);
          expect(branchFiles(dataDir, turning.id)).toContain("partial.txt");
          observe("what the agent had written was committed to the task branch before the stop");
          const strays = processesUnder(workspace);
          expect(strays.map((p) => p.cmdline)).toEqual([]);
          const ended = logEvents(second, "recovery.orphan_processes.ended")[0]?.pids as number[] | undefined;
          expect(ended?.length).toBeGreaterThan(0);
          observe(
            `the dead server's orphans (its agent command, its stalled git fetch: ${ended?.length} processes) were ended at start-up`,
          );
          await followUp(second, turning.id, "cat partial.txt > again.txt");
          const after = await waitForTask(second, turning.id, resting, "finished the follow-up");
          expect(after.status).toBe("COMPLETED");
          const diff = (await second.api<DiffResponse>("GET", `/api/tasks/${turning.id}/diff`)).body;
          expect(diff.files.map((f) => f.path).sort()).toEqual(["again.txt", "partial.txt"]);
          observe("a follow-up continued on the same workspace with the saved work");
        },
      );
      await reliabilityCase(
        "fault-injection",
        FILE,
        "local: SIGKILL with a finished task whose work was saved",
        async (observe) => {
          const task = await getTask(second, saved.id);
          expect([task.status, task.initStatus]).toEqual(["COMPLETED", "ACTIVE"]);
          expect(branchContains(dataDir, saved.id, savedHead)).toBe(true);
          observe(`task still ${task.status}/${task.initStatus}, branch head ${savedHead.slice(0, 8)} still on it`);
        },
      );
      const tasks = (await second.api<{ tasks: TaskDto[] }>("GET", "/api/tasks")).body.tasks;
      expect(tasks.filter((t) => !resting(t))).toEqual([]);
    } finally {
      expect(await second.stop()).toBe(0);
    }
    const leaked = await settleProcessesUnder(dataDir);
    expect(leaked, describeProcessesUnder(dataDir)).toEqual([]);
  }, 90_000);
});

describe("remote mode: SIGKILL of the server, and of a sidecar", () => {
  const REMOTE_STEPS = [
    "INACTIVE",
    "CREATE_VM",
    "WAIT_VM_READY",
    "VERIFY_VM_WORKSPACE",
    "INSTALL_DEPENDENCIES",
    "INDEX_REPOSITORY",
    "ACTIVE",
  ];
  const env = {
    AGENT_MODE: "remote",
    // Long enough for a follow-up sent right after a turn to land inside it on a loaded machine.
    TASK_CLEANUP_DELAY_MS: "5000",
    TASK_CLEANUP_INTERVAL_MS: "600000",
    HEALTH_CHECK_INTERVAL_MS: "600000",
    VM_READY_TIMEOUT_MS: "60000",
    // The stalled remote is an HTTP server on 127.0.0.1: a loopback repository host, allowed here on purpose.
    ALLOWED_REPO_HOSTS: "127.0.0.1",
  };
  let gated: GatedGitServer | undefined;
  afterAll(async () => {
    await gated?.close();
  });

  // Sandboxes started, frozen, killed and replaced, and two servers started, on two cores: minutes.
  it("recovers tasks killed in every step, a turn and a cleanup; destroys the dead server's sandboxes", async () => {
    const dataDir = dataDirs.create("umbra-fault-remote-");
    const first = await spawnServer({ dataDir, env });
    const smallRepo = createRepo({ "README.md": "# small\n" });

    // A turn in progress on top of a saved one: one.txt is saved, partial.txt only in the sandbox.
    const turning = await createTask(first, smallRepo, "echo one > one.txt");
    await waitForTask(first, turning.id, (t) => t.status === "COMPLETED", "completed its first turn");
    const savedHead = taskBranchHead(dataDir, turning.id)!;
    await followUp(first, turning.id, "echo partial > partial.txt; sleep 600");
    await waitForTask(first, turning.id, (t) => t.status === "RUNNING", "running");
    const turningRecord = readSandboxRecord(dataDir, turning.id)!;
    await waitForTask(
      first,
      turning.id,
      () => processesUnder(join(dataDir, "vms", turning.id)).some((p) => p.cmdline.includes("sleep 600")),
      "started its command",
    );

    // CREATE_VM held in its fetch: the remote stalls.
    gated = await serveGatedRepo(createRepo({ "README.md": "# gated\n" }));
    const fetching = await createTask(first, gated.url, "echo fetched > fetched.txt");
    await gated.firstRequest;
    expect((await getTask(first, fetching.id)).initStatus).toBe("CREATE_VM");

    // WAIT_VM_READY held: the sandbox is frozen the moment its record appears, before the first health probe.
    const waiting = await createTask(first, smallRepo, "echo waited > waited.txt");
    const waitingRecord = spinUntil(() => listeningSandbox(dataDir, waiting.id), "sandbox record");
    freezeSandbox(waitingRecord);
    const waitingAt = await waitForTask(first, waiting.id, (t) => t.initStatus !== "CREATE_VM", "left CREATE_VM");
    expect(waitingAt.initStatus).toBe("WAIT_VM_READY");

    // VERIFY_VM_WORKSPACE held: frozen as soon as the API reports the step (sending a 1500-file branch takes a while).
    const verifying = await createTask(first, createLargeRepo(), "echo verified > verified.txt");
    await pollUntilStep(first, verifying.id, "VERIFY_VM_WORKSPACE", REMOTE_STEPS);
    freezeSandbox(readSandboxRecord(dataDir, verifying.id)!);

    // A cleanup in flight: the warm window (5 s) ends while the sandbox is frozen; the cleanup claims the task
    // and its probe waits on the sandbox (bytes sit unread on the sidecar's socket).
    const cleaning = await createTask(first, smallRepo, "echo cleaned > cleaned.txt");
    await waitForTask(first, cleaning.id, (t) => t.status === "COMPLETED", "completed");
    const cleaningHead = taskBranchHead(dataDir, cleaning.id)!;
    const cleaningRecord = listeningSandbox(dataDir, cleaning.id)!;
    freezeSandbox(cleaningRecord);
    // The health sweep probes sandboxes too: wait until the cleanup itself has claimed the task (it then probes
    // the frozen sandbox until its probe times out, which is when the server is killed below).
    await waitForTask(
      first,
      cleaning.id,
      () => logEvents(first, "cleanup.started").some((line) => line.taskId === cleaning.id),
      "had its cleanup claimed",
    );
    expect((await getTask(first, cleaning.id)).status).toBe("COMPLETED");

    // CREATE_VM held while the sandbox starts: its sidecar is frozen before it listens (no port recorded).
    const largeRepo = createLargeRepo();
    const before = runningPids();
    const launching = await createTask(first, smallRepo, "echo launched > launched.txt");
    const launchingPid = spinUntil(() => sidecarPid(launching.id, before), "launching sidecar");
    process.kill(launchingPid, "SIGSTOP");
    expect(readSandboxRecord(dataDir, launching.id)?.endpoint).toBeUndefined(); // not listening: no endpoint recorded
    const indexing = await createTask(first, largeRepo, "echo indexed > indexed.txt");

    expect((await getTask(first, waiting.id)).initStatus).toBe("WAIT_VM_READY");
    expect((await getTask(first, verifying.id)).initStatus).toBe("VERIFY_VM_WORKSPACE");
    expect((await getTask(first, launching.id)).initStatus).toBe("CREATE_VM");

    // The kill itself, the moment the API reports the 1500-file workspace ACTIVE: its index is being built in the
    // background (INDEX_REPOSITORY does not wait for it) and its first turn starts.
    await pollUntilStep(first, indexing.id, "ACTIVE", REMOTE_STEPS);
    await first.kill();
    const indexBuiltBeforeKill = logEvents(first, "index.built").some((line) => line.repoUrl === largeRepo);
    const deadSandboxes = [...[turningRecord, waitingRecord, cleaningRecord].map((r) => r.pid), launchingPid];
    const sandboxNames = ["mid-turn", "frozen waiting", "frozen cleaning", "half-started"];

    const second = await spawnServer({ dataDir, port: first.port, env });
    try {
      gated.release();
      // The frozen sandbox of the interrupted cleanup may hold unsaved work: it is kept (not destroyed) until it
      // answers again or its grace period ends. It answers again now.
      process.kill(-cleaningRecord.pid, "SIGCONT");
      const initCases: [TaskDto, string, string][] = [
        [fetching, "remote: SIGKILL while CREATE_VM fetches from a stalled git remote", "fetched.txt"],
        [launching, "remote: SIGKILL during CREATE_VM while the sandbox starts (no vm.json yet)", "launched.txt"],
        [waiting, "remote: SIGKILL during WAIT_VM_READY (sandbox frozen)", "waited.txt"],
        [verifying, "remote: SIGKILL during VERIFY_VM_WORKSPACE (sandbox frozen mid-transfer)", "verified.txt"],
      ];
      for (const [task, fault, file] of initCases) {
        await reliabilityCase("fault-injection", FILE, fault, async (observe) => {
          // COMPLETED, or already ARCHIVED by its 5 s warm window.
          const done = await waitForTask(second, task.id, resting, "came to rest", 45_000);
          observe(
            done.status === "COMPLETED"
              ? "the initialization restarted and the task COMPLETED"
              : `the initialization restarted, the task completed and was ${done.status} by its 5 s warm window`,
          );
          expect(done.errorMessage).toBeNull();
          expect(["COMPLETED", "ARCHIVED"]).toContain(done.status);
          expect(branchFiles(dataDir, task.id)).toContain(file);
          observe(`its message ran in a fresh sandbox (${file} saved)`);
        });
      }
      await reliabilityCase(
        "fault-injection",
        FILE,
        "remote: SIGKILL while the index of a 1500-file repository is built in the background",
        async (observe) => {
          observe(
            indexBuiltBeforeKill
              ? "the index was already complete at the kill (this run did not catch it under way)"
              : "killed with the index under way, the sandbox ACTIVE and its first turn starting",
          );
          const task = await waitForTask(second, indexing.id, resting, "came to rest", 45_000);
          observe(`task at rest ${task.status}/${task.initStatus}`);
          // Its turn had ended (then archived by the 5 s warm window, or not yet), or was interrupted and stopped.
          expect(["COMPLETED", "ARCHIVED", "STOPPED"]).toContain(task.status);
          await followUp(second, indexing.id, "echo after > after.txt");
          const after = await waitForTask(second, indexing.id, resting, "finished the follow-up", 45_000);
          expect(after.status).toBe("COMPLETED");
          expect(branchFiles(dataDir, indexing.id)).toContain("after.txt");
          observe("a follow-up ran and was saved");
        },
      );
      await reliabilityCase(
        "fault-injection",
        FILE,
        "remote: SIGKILL during an agent turn (`sleep 600`) after a saved turn",
        async (observe) => {
          const task = await interruptedTurnAtRest(second, turning.id);
          observe(
            task.status === "STOPPED"
              ? `turn marked ${task.status}/${task.initStatus}: "${task.errorMessage}"`
              : `its sandbox was too busy to answer the take-over's probe: kept, saved by the cleanup, then ${task.status}/${task.initStatus}: "${task.errorMessage}"`,
          );
          expect(task.errorMessage).toMatch(/server stopped while the agent was working/);
          expect(branchContains(dataDir, turning.id, savedHead)).toBe(true);
          expect(branchFiles(dataDir, turning.id)).toEqual(expect.arrayContaining(["one.txt", "partial.txt"]));
          observe(
            "the saved turn's commit is still on the task branch, and the sandbox's uncommitted partial.txt was saved " +
              "through its sealed token before the old sandbox was destroyed",
          );
          await followUp(second, turning.id, "cat one.txt > two.txt");
          const after = await waitForTask(second, turning.id, resting, "finished the follow-up", 30_000);
          expect(after.status).toBe("COMPLETED");
          expect(branchFiles(dataDir, turning.id)).toEqual(expect.arrayContaining(["one.txt", "two.txt"]));
          observe("a follow-up re-initialized a new sandbox from the saved branch and completed");
        },
      );
      await reliabilityCase(
        "fault-injection",
        FILE,
        "remote: SIGKILL during a cleanup (claimed, probing a frozen sandbox)",
        async (observe) => {
          const task = await waitForTask(second, cleaning.id, (t) => t.status === "ARCHIVED", "archived", 30_000);
          // Either the dead server still held the claim (released at start-up), or its probe of the frozen
          // sandbox had already timed out and handed the claim back for a retry. Either way the task is
          // archived well within the claim's 5-minute lease, which a claim left behind would block.
          const released = logEvents(second, "recovery.cleanup_claim.released").map((l) => l.taskId);
          observe(
            released.includes(cleaning.id)
              ? "the dead server's cleanup claim was released at start-up (not left to its 5-minute lease)"
              : "the dead server's cleanup had handed its claim back (sandbox not answering); the next server ran it",
          );
          observe(`the interrupted cleanup ran again once the sandbox answered: ${task.status}/${task.initStatus}`);
          expect([task.initStatus, task.scheduledCleanupAt]).toEqual(["INACTIVE", null]);
          expect(branchContains(dataDir, cleaning.id, cleaningHead)).toBe(true);
          observe("its saved work is still on the task branch");
        },
      );
      await reliabilityCase(
        "fault-injection",
        FILE,
        "remote: sandboxes of the dead server (running, frozen, half-started)",
        async (observe) => {
          const survivors = () =>
            deadSandboxes
              .map((pid, i) => ({ pid, name: sandboxNames[i], state: processState(pid) }))
              .filter(({ pid }) => processRunning(pid));
          await waitForTask(second, turning.id, () => survivors().length === 0, "reaped").catch((error: Error) => {
            throw new Error(`${error.message}; alive: ${JSON.stringify(survivors())}`);
          });
          observe(
            `all ${deadSandboxes.length} sandboxes the dead server left (idle, mid-turn, frozen, half-started) were destroyed`,
          );
          const ended = (logEvents(second, "recovery.orphan_processes.ended")[0]?.pids as number[] | undefined) ?? [];
          expect(ended.length).toBeGreaterThan(0);
          observe(
            `${ended.length} orphaned processes of the dead server (its stalled git fetch) were ended at start-up`,
          );
        },
      );
      await reliabilityCase(
        "fault-injection",
        FILE,
        "remote: SIGKILL of the sidecar during a turn (`sleep 30`)",
        async (observe) => {
          const task = await createTask(second, smallRepo, "echo first > first.txt");
          await waitForTask(second, task.id, (t) => t.status === "COMPLETED", "completed");
          await followUp(second, task.id, "echo lost > lost.txt; sleep 30");
          await waitForTask(second, task.id, (t) => t.status === "RUNNING", "running");
          const pid = spinUntil(() => sidecarPid(task.id), "sidecar");
          await waitForTask(
            second,
            task.id,
            () => processesUnder(join(dataDir, "vms", task.id)).some((p) => p.cmdline.includes("sleep 30")),
            "started its command",
          );
          process.kill(pid, "SIGKILL");
          const ended = await waitForTask(second, task.id, resting, "ended its turn");
          observe(`turn ended ${ended.status}: "${ended.errorMessage}"`);
          expect(ended.status).toBe("FAILED");
          expect(ended.errorMessage).toMatch(/sidecar|sandbox/);
          await followUp(second, task.id, "cat first.txt > again.txt");
          const after = await waitForTask(second, task.id, resting, "finished the follow-up");
          expect(after.status).toBe("COMPLETED");
          expect(branchFiles(dataDir, task.id)).toEqual(expect.arrayContaining(["first.txt", "again.txt"]));
          observe("a follow-up re-initialized with the earlier saved work (first.txt) and completed");
        },
      );
      const tasks = (await second.api<{ tasks: TaskDto[] }>("GET", "/api/tasks")).body.tasks;
      expect(tasks.filter((t) => !resting(t)).map((t) => `${t.id} ${t.status}`)).toEqual([]);
    } finally {
      expect(await second.stop()).toBe(0);
    }
    await destroySandboxes(dataDir);
    const leaked = await settleProcessesUnder(dataDir);
    expect(leaked, describeProcessesUnder(dataDir)).toEqual([]);
  }, 300_000);
});

describe.runIf(await postgresAvailable())("Postgres connections terminated under a running server", () => {
  let scratch: ScratchPostgres | undefined;
  let admin: pg.Client | undefined;
  let gated: GatedGitServer | undefined;
  afterAll(async () => {
    await gated?.close();
    await admin?.end();
    await scratch?.drop();
  });

  it("reconnects: the next request works and tasks in every phase complete", async () => {
    scratch = await createScratchPostgres();
    const database = new URL(scratch.url).pathname.slice(1);
    admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
    await admin.connect();
    const terminate = async () =>
      (
        await admin!.query<{ n: string }>(
          `SELECT count(*) AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()) AS ended`,
          [database],
        )
      ).rows[0]!.n;
    const dataDir = dataDirs.create("umbra-fault-pg-");
    const server = await spawnServer({ dataDir, env: { DATABASE_URL: scratch.url, ALLOWED_REPO_HOSTS: "127.0.0.1" } });
    try {
      const done = await createTask(server, createRepo(), "echo before > before.txt");
      await waitForTask(server, done.id, resting, "completed");

      await reliabilityCase(
        "fault-injection",
        FILE,
        "Postgres: every connection of the server terminated while idle (pg_terminate_backend)",
        async (observe) => {
          observe(`${await terminate()} connections terminated`);
          const list = await server.api<{ tasks: TaskDto[] }>("GET", "/api/tasks");
          expect(list.status).toBe(200);
          expect(list.body.tasks.map((t) => t.id)).toContain(done.id);
          observe("the very next request answered 200 with the data");
        },
      );

      await reliabilityCase(
        "fault-injection",
        FILE,
        "Postgres: connections terminated during an initialization and during a turn",
        async (observe) => {
          const goFile = join(tempDir("umbra-go-"), "go");
          gated = await serveGatedRepo(createRepo({ "README.md": "# pg\n" }));
          const initializing = await createTask(server, gated.url, "echo initialized > initialized.txt");
          await gated.firstRequest;
          const turning = await createTask(
            server,
            createRepo(),
            `echo started; while [ ! -e ${goFile} ]; do sleep 0.05; done; echo after > after.txt`,
          );
          await waitForTask(server, turning.id, (t) => t.status === "RUNNING", "running");
          observe(`${await terminate()} connections terminated with one task in PREPARE_WORKSPACE and one RUNNING`);
          writeFileSync(goFile, "");
          gated.release();
          for (const [task, file] of [
            [initializing, "initialized.txt"],
            [turning, "after.txt"],
          ] as const) {
            const finished = await waitForTask(server, task.id, resting, "finished");
            expect([finished.status, finished.errorMessage]).toEqual(["COMPLETED", null]);
            expect(branchFiles(dataDir, task.id)).toContain(file);
          }
          const messages = await server.api<{ messages: { role: string; content: string }[] }>(
            "GET",
            `/api/tasks/${turning.id}/messages`,
          );
          expect(messages.body.messages.map((m) => m.content).join("\n")).toContain("started");
          observe("both tasks completed with their work saved; the turn's output was persisted");
          const poolErrors = server
            .output()
            .split("\n")
            .filter((l) => l.includes('"msg":"db.pool.error"')).length;
          observe(`the server logged ${poolErrors} db.pool.error warnings and kept running`);
          expect(server.child.exitCode).toBeNull();
        },
      );

      await reliabilityCase(
        "fault-injection",
        FILE,
        "Postgres: database unavailable (connections refused and ended) while turns end and tasks are created",
        async (observe) => {
          const goFile = join(tempDir("umbra-go-"), "go");
          const repo = createRepo();
          const turns = await Promise.all(
            [1, 2, 3].map((i) =>
              createTask(server, repo, `while [ ! -e ${goFile} ]; do sleep 0.05; done; echo ${i} > turn${i}.txt`),
            ),
          );
          for (const task of turns) await waitForTask(server, task.id, (t) => t.status === "RUNNING", "running");
          await admin!.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS false`);
          let outage = true;
          try {
            observe(`database closed to new connections, ${await terminate()} connections ended`);
            const errorsBefore = server.output().split("\n").length;
            writeFileSync(goFile, ""); // the turns end now, while their final writes cannot reach the database
            const creating = server.api<{ task: TaskDto }>("POST", "/api/tasks", {
              repoUrl: repo,
              message: "echo late > late.txt",
            });
            await waitForTask(
              server,
              turns[0]!.id,
              () =>
                server
                  .output()
                  .split("\n")
                  .slice(errorsBefore)
                  .some((l) => l.includes("db.pool.error")),
              "met the outage",
            ).catch(() => undefined); // reads fail during the outage; the log is what to watch
            await admin!.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS true`);
            outage = false;
            observe("connections allowed again after the server had met the outage");
            const created = await creating;
            expect(created.status).toBe(201);
            const late = await waitForTask(server, created.body.task.id, resting, "finished");
            expect(late.status).toBe("COMPLETED");
            observe("a task created during the outage was accepted once the database answered, and completed");
          } finally {
            if (outage) await admin!.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS true`);
          }
          for (const [i, task] of turns.entries()) {
            const finished = await waitForTask(server, task.id, resting, "finished");
            expect([finished.status, finished.errorMessage]).toEqual(["COMPLETED", null]);
            expect(branchFiles(dataDir, task.id)).toContain(`turn${i + 1}.txt`);
          }
          observe("all three turns that ended during the outage completed (no task left RUNNING)");
        },
      );
    } finally {
      expect(await server.stop()).toBe(0);
    }
    expect(await settleProcessesUnder(dataDir), describeProcessesUnder(dataDir)).toEqual([]);
  }, 60_000);
});

describe("a cleanup claim held by another worker", () => {
  it("does not make the cleanup service spin on the passed deadline: it wakes when the lease ends", async () => {
    await reliabilityCase(
      "fault-injection",
      FILE,
      "cleanup: a due task claimed by another (live or dead) worker whose lease still holds",
      async (observe) => {
        const database = await openDatabase();
        const clock = new ManualClock();
        const log = createLogger("silent");
        const core = createTaskCore({ db: database.db, clock, cleanupDelayMs: 60_000, log });
        let claimPasses = 0;
        const claimDue = core.claims.claimDue.bind(core.claims);
        core.claims.claimDue = (...args) => {
          claimPasses++;
          return claimDue(...args);
        };
        const destroyed: string[] = [];
        const workspaces: WorkspaceManager = {
          mode: "remote",
          runStep: async () => undefined,
          executor: async () => {
            throw new Error("no executor in this test");
          },
          attach: async () => null,
          agentHome: async () => {
            throw new Error("no agent runs in this test");
          },
          saveWork: async () => "sha",
          teardown: async (task) => {
            destroyed.push(task.id);
          },
          isAlive: async () => false,
        };
        const teardown = new WorkspaceTeardown({ status: core.status, workspaces, tasks: core.tasks, log });
        const service = new TaskCleanupService({ clock, ...core, teardown, intervalMs: 60 * 60_000, log });
        const loadTask = (id: string) => core.tasks.get(id);
        try {
          const task = await warmTask(core.status, 1);
          clock.advance(60_000);
          await database.db
            .update(tasks)
            .set({
              cleanupClaimedBy: "cleanup:elsewhere:1:0badc0de",
              cleanupLeaseUntil: new Date(clock.now().getTime() + 300_000),
            })
            .where(eq(tasks.id, task.id));
          service.start();
          await service.whenIdle();
          const passes = claimPasses;
          clock.advance(0); // a timer armed at the passed deadline would fire here, and again after every pass
          await service.whenIdle();
          expect(claimPasses).toBe(passes);
          observe(`${passes} claim pass(es) while the lease held, none more when time did not move`);
          clock.advance(300_001);
          await service.whenIdle();
          expect((await loadTask(task.id)).status).toBe("ARCHIVED");
          expect(destroyed).toEqual([task.id]);
          observe("the task was cleaned up once, when the lease ran out");
        } finally {
          await service.stop();
          await database.close();
        }
      },
    );
  });
});
