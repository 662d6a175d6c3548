/**
 * Several real server processes on one Postgres, the way a team runs Umbra
 * with replicas on one host: a fresh scratch database, one shared DATA_DIR
 * (repository store, sandboxes), one SECRETS_KEY. Each test builds its own
 * cluster and tears it down: servers stopped, sandboxes destroyed, nothing
 * left running under the data directory.
 */
import { randomBytes } from "node:crypto";
import { type Database, openDatabase, type TaskRow, tasks, vmSessions } from "@repo/db";
import type { TaskDto } from "@repo/types";
import { eq } from "drizzle-orm";
import { createScratchPostgres, type ScratchPostgres } from "./databases";
import { type DataDirs, destroySandboxes } from "./faults";
import { type ServerProcess, settleProcessesUnder, spawnServer } from "./server-process";

export interface Cluster {
  dataDir: string;
  url: string;
  servers: ServerProcess[];
  /** A direct connection to the cluster's database, for reading rows. */
  database: Database;
  /** Starts one more server on the same database and data directory. */
  add(options?: { env?: Record<string, string>; hostname?: string }): Promise<ServerProcess>;
  task(id: string): Promise<TaskRow>;
  sessions(taskId: string): Promise<(typeof vmSessions.$inferSelect)[]>;
  /** Stops every server gracefully (exit code 0 expected), destroys sandboxes, returns what is still running. */
  /** Stops every server (SIGTERM, then SIGKILL after `stopMs`, default 90 s) and reports what was left. */
  close(stopMs?: number): Promise<{ exitCodes: (number | string)[]; leaked: string[] }>;
}

export async function startCluster(options: {
  dataDirs: DataDirs;
  count: number;
  env: Record<string, string>;
  /** Host names per server (index); a server with one looks like it runs on another host. */
  hostnames?: (string | undefined)[];
}): Promise<Cluster> {
  const scratch: ScratchPostgres = await createScratchPostgres();
  const dataDir = options.dataDirs.create("umbra-cluster-");
  const env = {
    DATABASE_URL: scratch.url,
    SECRETS_KEY: randomBytes(32).toString("base64"),
    // The tests' git servers listen on loopback, which the repository URL policy refuses by default.
    ALLOWED_REPO_HOSTS: "127.0.0.1",
    // No pushes back into the tests' repositories: a push held by a gated git server would hold a
    // server's shutdown (it drains its pushes) past the time these tests give it.
    DELIVERY: "none",
    ...options.env,
  };
  const servers: ServerProcess[] = [];
  const add = async (extra: { env?: Record<string, string>; hostname?: string } = {}) => {
    const server = await spawnServer({ dataDir, env: { ...env, ...extra.env }, hostname: extra.hostname });
    servers.push(server);
    return server;
  };
  // One at a time: the first migrates the scratch database, the others find it done.
  for (let i = 0; i < options.count; i++) await add({ hostname: options.hostnames?.[i] });
  const database = await openDatabase({ databaseUrl: scratch.url, poolSize: 2 });
  return {
    dataDir,
    url: scratch.url,
    servers,
    database,
    add,
    async task(id) {
      const [row] = await database.db.select().from(tasks).where(eq(tasks.id, id));
      if (!row) throw new Error(`task ${id} not found`);
      return row;
    },
    sessions: (taskId) => database.db.select().from(vmSessions).where(eq(vmSessions.taskId, taskId)),
    async close(stopMs = 90_000) {
      const exitCodes = await Promise.all(
        // A graceful stop saves the turns still running in sandboxes; on a loaded machine that takes a while.
        servers.filter((s) => s.child.exitCode === null && s.child.signalCode === null).map((s) => s.stop(stopMs)),
      );
      await database.close();
      await destroySandboxes(dataDir);
      const leaked = (await settleProcessesUnder(dataDir)).map((p) => `${p.pid} ${p.cmdline}`);
      await scratch.drop();
      return { exitCodes, leaked };
    },
  };
}

/** The task as a server's API shows it. */
export async function apiTask(server: ServerProcess, id: string): Promise<TaskDto> {
  const reply = await server.api<{ task: TaskDto }>("GET", `/api/tasks/${id}`);
  if (reply.status !== 200) throw new Error(`GET task ${id}: ${reply.status} ${reply.text}`);
  return reply.body.task;
}
