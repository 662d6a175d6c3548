import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TaskDto } from "@repo/types";
import { ProcessVmProvider } from "../../apps/server/src/execution/vm/process/process-provider";
import { UMBRA_LABELS, UMBRA_MANAGED_BY } from "../../apps/server/src/execution/vm/types";
import { createLogger } from "../../apps/server/src/logger";
import { SIDECAR_BUNDLE_PATH } from "../../apps/sidecar/build";
import { git, tempDir } from "./git";
import { readSandboxRecord, type SandboxRecordView } from "./sandbox-probe";
import { killAllServers, killProcessesUnder, processesUnder, type ServerProcess } from "./server-process";
import { detachMountsUnder } from "./temp-dirs";

type TaskBody = { task: TaskDto };

export const RESTING_STATUSES = ["COMPLETED", "STOPPED", "FAILED", "ARCHIVED"];
export const resting = (task: TaskDto) => RESTING_STATUSES.includes(task.status);

/** A repository big enough that fetching, bundling and indexing it take a few hundred milliseconds. */
export function createLargeRepo(files = 1500): string {
  const dir = tempDir("umbra-large-repo-");
  git(dir, "init", "--quiet", "-b", "main");
  const filler = "lorem ipsum dolor sit amet ".repeat(20);
  for (let i = 0; i < files; i++) {
    mkdirSync(join(dir, `d${i % 50}`), { recursive: true });
    writeFileSync(join(dir, `d${i % 50}`, `f${i}.txt`), `file ${i} ${filler}\n`);
  }
  git(dir, "add", "-A");
  git(dir, "commit", "--quiet", "-m", "large initial commit");
  return dir;
}

export async function getTask(server: ServerProcess, id: string): Promise<TaskDto> {
  const reply = await server.api<TaskBody>("GET", `/api/tasks/${id}`);
  if (reply.status !== 200) throw new Error(`GET task ${id}: ${reply.status} ${reply.text}`);
  return reply.body.task;
}

export async function createTask(server: ServerProcess, repoUrl: string, message: string): Promise<TaskDto> {
  const reply = await server.api<TaskBody>("POST", "/api/tasks", { repoUrl, message });
  if (reply.status !== 201) throw new Error(`POST task: ${reply.status} ${reply.text}`);
  return reply.body.task;
}

export async function followUp(server: ServerProcess, id: string, message: string): Promise<TaskDto> {
  const reply = await server.api<TaskBody>("POST", `/api/tasks/${id}/messages`, { message });
  if (reply.status !== 202) throw new Error(`follow-up ${id}: ${reply.status} ${reply.text}`);
  return reply.body.task;
}

/** Polls the task (real work in another process) until `test` holds. */
export async function waitForTask(
  server: ServerProcess,
  id: string,
  test: (task: TaskDto) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<TaskDto> {
  const started = Date.now();
  let task = await getTask(server, id);
  while (!test(task)) {
    if (Date.now() - started > timeoutMs) {
      throw new Error(`task ${id} never ${what}; last ${task.status}/${task.initStatus} ${task.errorMessage ?? ""}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
    task = await getTask(server, id);
  }
  return task;
}

/** Polls until the task is `status`; fails at once when its turn ended otherwise (COMPLETED, FAILED, STOPPED). */
export function waitForTaskStatus(
  server: ServerProcess,
  id: string,
  status: TaskDto["status"],
  timeoutMs = 60_000,
): Promise<TaskDto> {
  const ended = (task: TaskDto) => ["COMPLETED", "FAILED", "STOPPED"].includes(task.status);
  return waitForTask(
    server,
    id,
    (task) => {
      if (task.status !== status && ended(task)) throw new Error(`task ${id} ended ${task.status}, not ${status}`);
      return task.status === status;
    },
    `became ${status}`,
    timeoutMs,
  );
}

/**
 * Polls as fast as the API answers until the task reads `step` (of `steps`,
 * in order); throws when the task went past it (the step was too quick to
 * catch).
 */
export async function pollUntilStep(server: ServerProcess, id: string, step: string, steps: string[]): Promise<void> {
  const target = steps.indexOf(step);
  const started = Date.now();
  for (;;) {
    const task = await getTask(server, id);
    if (task.initStatus === step) return;
    if (task.status !== "INITIALIZING" || steps.indexOf(task.initStatus) > target) {
      throw new Error(`missed ${step}: task is already ${task.status}/${task.initStatus}`);
    }
    if (Date.now() - started > 30_000) throw new Error(`task ${id} never reached ${step}`);
  }
}

/**
 * Spins (synchronously: microseconds per look, nothing else runs meanwhile)
 * until `look` finds something. For windows of a few milliseconds in another
 * process; bounded by `timeoutMs`.
 */
export function spinUntil<T>(look: () => T | null, what: string, timeoutMs = 15_000): T {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = look();
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`${what} not seen within ${timeoutMs} ms`);
  }
}

/** The sandbox's record once its sidecar listens (the record is first written without a port). */
export function listeningSandbox(dataDir: string, taskId: string): SandboxRecordView | null {
  const record = readSandboxRecord(dataDir, taskId);
  return record?.endpoint ? record : null;
}

/** Freezes (SIGSTOP) every process of a sandbox: the recorded pid leads its process group. */
export function freezeSandbox(record: SandboxRecordView): void {
  process.kill(-record.pid, "SIGSTOP");
}

/**
 * Destroys a data directory's remaining sandboxes with the provider's own
 * records, as an operator would; returns those that still ran. Dead ones are
 * destroyed too: a sandbox killed with its server still has its cgroups, its
 * volume and its uid to give back.
 */
export async function destroySandboxes(dataDir: string): Promise<string[]> {
  const provider = new ProcessVmProvider({
    dataDir,
    sidecarBundlePath: SIDECAR_BUNDLE_PATH,
    logger: createLogger("silent"),
  });
  const listed = await provider.list({ [UMBRA_LABELS.managedBy]: UMBRA_MANAGED_BY });
  let recorded: string[] = [];
  try {
    recorded = readdirSync(join(dataDir, "vms"));
  } catch {
    // no sandbox was ever made here
  }
  // destroy() ignores a name that is not a task id.
  for (const id of new Set([...listed.map((vm) => vm.externalId), ...recorded])) await provider.destroy(id);
  return listed.map((vm) => vm.externalId);
}

/**
 * Waits until a turn interrupted by its server's death is at rest with its
 * sandbox gone (INACTIVE), and returns it. The server that took it over ends
 * it STOPPED when the sandbox answered its probe (saved, then destroyed), or
 * — when the sandbox was silent then — STOPPED with the sandbox kept and
 * handed to the cleanup, which saves it and archives the task: ARCHIVED is
 * accepted only when a server's log (of `servers`) says the sandbox was silent.
 */
export async function interruptedTurnAtRest(
  server: ServerProcess,
  id: string,
  servers: ServerProcess[] = [server],
  timeoutMs = 60_000,
): Promise<TaskDto> {
  const task = await waitForTask(
    server,
    id,
    (t) => resting(t) && t.initStatus === "INACTIVE",
    "came to rest with its sandbox removed",
    timeoutMs,
  );
  if (task.status !== "STOPPED") {
    const silent = servers.some((s) =>
      logEvents(s, "recovery.turn.stopped_sandbox_silent").some((line) => line.taskId === id),
    );
    if (task.status !== "ARCHIVED" || !silent) {
      const history = servers.flatMap((s) =>
        s
          .output()
          .split("\n")
          .filter((line) => line.includes(id)),
      );
      throw new Error(
        `interrupted turn ${id} ended ${task.status}/${task.initStatus} (sandbox silent: ${silent}); its log:\n${history.slice(-30).join("\n")}`,
      );
    }
  }
  return task;
}

/** The server's log records with this event name (`msg`), parsed. */
export function logEvents(server: ServerProcess, event: string): Record<string, unknown>[] {
  return server
    .output()
    .split("\n")
    .filter((line) => line.includes(`"msg":"${event}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Live processes under a directory, one per line, for an assertion message. */
export function describeProcessesUnder(dir: string): string {
  return processesUnder(dir)
    .map((p) => `${p.pid} [${p.cwd}] ${p.cmdline}`)
    .join("\n");
}

/**
 * Temporary data directories of one test file. `cleanUp()` (in afterAll)
 * kills the server children still running, then anything left under the
 * directories (a failed test's sandboxes), then removes them.
 */
export class DataDirs {
  private readonly dirs: string[] = [];

  create(prefix: string): string {
    const dir = tempDir(prefix);
    this.dirs.push(dir);
    return dir;
  }

  async cleanUp(): Promise<void> {
    await killAllServers();
    for (const dir of this.dirs) {
      await destroySandboxes(dir).catch(() => undefined);
      const leftovers = killProcessesUnder(dir);
      if (leftovers.length > 0) console.error(`killed what a failed test left under ${dir}:`, leftovers);
      detachMountsUnder(dir);
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
