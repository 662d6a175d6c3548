/**
 * Driving a WorkspaceManager directly, the way the initialization engine and
 * the turn runner do, for tests of workspaces at the manager level: a real
 * database, a real task row, the mode's provisioning steps (minus indexing),
 * and the server's log lines captured as objects.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { join } from "node:path";
import { type Database, type Db, openDatabase, type TaskRow } from "@repo/db";
import { getStepsForMode, type InitStatus, type TaskMode } from "@repo/types";
import { pino } from "pino";
import { AgentStateDirs } from "../../apps/server/src/execution/agent-state";
import { RemoteWorkspaceManager } from "../../apps/server/src/execution/remote/remote-workspace-manager";
import type { WorkspaceManager } from "../../apps/server/src/execution/types";
import { ProcessVmProvider } from "../../apps/server/src/execution/vm/process/process-provider";
import type { Logger } from "../../apps/server/src/logger";
import { RepositoryStore } from "../../apps/server/src/repository/repository-store";
import { systemClock } from "../../apps/server/src/utils/clock";
import { SecretBox } from "../../apps/server/src/utils/secret-box";
import { createTaskStatusStore, type TaskStatusStore } from "../../apps/server/src/utils/task-status";
import { ensureSidecarBundle } from "../../apps/sidecar/build";

export interface LogLine {
  msg: string;
  taskId?: string;
  [field: string]: unknown;
}

/** A logger at `info` whose lines land in `lines`, parsed. */
export function capturingLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line) as LogLine) });
  return { log, lines };
}

/**
 * A remote workspace manager whose sandboxes come from the `process` provider
 * under `dataDir` (bubblewrap when present), with a fresh secrets key.
 */
export async function processRemoteManager(options: {
  db: Db;
  store: RepositoryStore;
  dataDir: string;
  log: Logger;
  agentState?: AgentStateDirs;
}): Promise<RemoteWorkspaceManager> {
  const { db, store, dataDir, log } = options;
  return new RemoteWorkspaceManager({
    db,
    clock: systemClock,
    store,
    provider: new ProcessVmProvider({ dataDir, sidecarBundlePath: await ensureSidecarBundle(), logger: log }),
    readyTimeoutMs: 60_000,
    secrets: SecretBox.withKey(randomBytes(32)),
    agentState: options.agentState ?? new AgentStateDirs(join(dataDir, "agent-state")),
    log,
  });
}

export interface WorkspaceHarness {
  database: Database;
  status: TaskStatusStore;
  /** A new task on `repoUrl` in `mode`, with its task branch named. */
  newTask(repoUrl: string, mode: TaskMode): Promise<TaskRow>;
  /** Runs the mode's provisioning steps (indexing only recorded) and leaves the task INITIALIZING / ACTIVE. */
  provision(manager: WorkspaceManager, task: TaskRow): Promise<TaskRow>;
  /** Marks a provisioned task's workspace gone (after a teardown), as the cleanup does. */
  markInactive(task: TaskRow): Promise<TaskRow>;
  close(): Promise<void>;
}

const silent = pino({ level: "silent" });

export async function openWorkspaceHarness(): Promise<WorkspaceHarness> {
  const database = await openDatabase();
  const status = createTaskStatusStore({ db: database.db, clock: systemClock, cleanupDelayMs: 600_000 });
  const moved = (row: TaskRow | null, what: string): TaskRow => {
    if (!row) throw new Error(`the task status store refused ${what}`);
    return row;
  };
  return {
    database,
    status,
    async newTask(repoUrl, mode) {
      const id = randomUUID();
      return status.createTask({ id, title: "harness", mode, repoUrl, branch: RepositoryStore.branchFor(id) });
    },
    async provision(manager, initial) {
      let task = initial;
      for (const step of getStepsForMode(manager.mode)) {
        task = moved(await status.setInitStatus(task.id, step as InitStatus), step);
        if (step === "INSTALL_DEPENDENCIES" || step === "INDEX_REPOSITORY") continue;
        const context = { task, signal: new AbortController().signal, log: silent, output: () => {} };
        const patch = await manager.runStep(step, context);
        if (patch && Object.keys(patch).length > 0)
          task = moved(await status.updateTaskFields(task.id, patch), "fields");
      }
      return moved(await status.setInitStatus(task.id, "ACTIVE"), "ACTIVE");
    },
    async markInactive(task) {
      return moved(await status.setInitStatus(task.id, "INACTIVE"), "INACTIVE");
    },
    close: () => database.close(),
  };
}
