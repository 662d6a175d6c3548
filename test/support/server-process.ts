/**
 * The real server as a child process (`node --import tsx apps/server/src/main.ts`),
 * for tests that kill it: SIGKILL at a chosen moment, start it again on the
 * same DATA_DIR, see what the next process makes of what the dead one left.
 *
 * Every child is tracked by pid; `killAllServers()` ends the ones still
 * running (tests call it in afterAll). `processesUnder(dir)` finds live
 * processes that mention a directory on their command line or run inside it,
 * which is how the tests prove nothing leaked.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PGLITE_TEMPLATES } from "./databases";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = join(REPO_ROOT, "apps/server/src/main.ts");
/** What `npm start` runs, once `npm run build:server` has written it. */
export const SERVER_BUNDLE = join(REPO_ROOT, "apps/server/dist/main.mjs");

const running = new Set<ChildProcess>();

export interface ServerProcessOptions {
  dataDir: string;
  /** Extra environment (AGENT_MODE, DATABASE_URL, ...). PORT/HOST/DATA_DIR/AGENT are set unless given here. */
  env?: Record<string, string>;
  /** Reuse a port (a restart); default: a free one. */
  port?: number;
  /** Wait for GET /api/health. Default true. */
  waitHealthy?: boolean;
  /** How long to wait for it, ms. Default 60000. */
  healthyTimeoutMs?: number;
  /** Bearer token for the helper's own requests (health, api). */
  token?: string;
  /**
   * Run the server in its own UTS namespace with this host name (`unshare --uts`, as root): to the
   * other servers of this machine it then looks like a server on another host.
   */
  hostname?: string;
  /**
   * Run the bundled server as `npm start` does (SERVER_BUNDLE, built by the caller) instead of the
   * sources through tsx. Default false.
   */
  bundled?: boolean;
}

export interface ServerProcess {
  pid: number;
  port: number;
  url: string;
  dataDir: string;
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  exited: Promise<number | string>;
  api<T = unknown>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Reply<T>>;
  /** Sends SIGKILL and waits for the exit. */
  kill(): Promise<void>;
  /** Sends SIGTERM (graceful shutdown) and waits for the exit; SIGKILL after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<number | string>;
}

export interface Reply<T> {
  status: number;
  body: T;
  text: string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** Starts the server as a child process; resolves once it answers GET /api/health (unless told not to wait). */
export async function spawnServer(options: ServerProcessOptions): Promise<ServerProcess> {
  const port = options.port ?? (await freePort());
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/tmp",
    PORT: String(port),
    HOST: "127.0.0.1",
    DATA_DIR: options.dataDir,
    AGENT: "shell",
    LOG_LEVEL: "info",
    PGLITE_TEMPLATE_DIR: PGLITE_TEMPLATES,
    ...options.env,
  };
  const node = options.bundled ? [process.execPath, SERVER_BUNDLE] : [process.execPath, "--import", "tsx", MAIN];
  const [command, args] = options.hostname
    ? ["unshare", ["--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', options.hostname, ...node]]
    : [node[0]!, node.slice(1)];
  const child = spawn(command, args, { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve(code ?? signal ?? "unknown");
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const auth: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
  const server: ServerProcess = {
    pid: child.pid!,
    port,
    url,
    dataDir: options.dataDir,
    child,
    output: () => output,
    exited,
    api: (method, path, body, headers = {}) => request(url, method, path, body, { ...auth, ...headers }),
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
    async stop(timeoutMs = 20_000) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
  if (options.waitHealthy === false) return server;
  const started = Date.now();
  let done = false;
  void exited.then(() => {
    done = true;
  });
  for (;;) {
    if (done) throw new Error(`server exited before it was healthy (${await exited}):\n${output.slice(-3000)}`);
    const healthy = await request(url, "GET", "/api/health", undefined, auth).then(
      (reply) => reply.status === 200,
      () => false,
    );
    if (healthy) return server;
    const timeoutMs = options.healthyTimeoutMs ?? 60_000;
    if (Date.now() - started > timeoutMs) {
      await server.kill();
      throw new Error(`server not healthy after ${timeoutMs / 1000} s:\n${output.slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function request<T>(
  base: string,
  method: string,
  path: string,
  body: unknown,
  headers: Record<string, string>,
): Promise<Reply<T>> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  const json = response.headers.get("content-type")?.includes("application/json");
  return { status: response.status, body: (json && text ? JSON.parse(text) : text || null) as T, text };
}

/** SIGKILLs every server child still running (by pid) and waits for them. */
export async function killAllServers(): Promise<void> {
  const children = [...running];
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("exit", () => resolve());
          child.kill("SIGKILL");
        }),
    ),
  );
}

export interface ProcessInfo {
  pid: number;
  cmdline: string;
  cwd: string;
}

/**
 * Live processes (not zombies, not this one) whose command line mentions
 * `dir` or whose working directory lies inside it: a leaked sandbox names its
 * workspace, an orphaned agent command runs in its workspace, an orphaned git
 * in the repository store.
 */
export function processesUnder(dir: string): ProcessInfo[] {
  const found: ProcessInfo[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
      if (state === "Z" || state === "X") continue;
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").join(" ").trim();
      let cwd = "";
      try {
        cwd = readlinkSync(`/proc/${name}/cwd`);
      } catch {
        // another user's process, or it just exited
      }
      if (cmdline.includes(dir) || cwd === dir || cwd.startsWith(`${dir}/`)) {
        found.push({ pid: Number(name), cmdline, cwd });
      }
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/** Waits until no process is under `dir`; returns what is still there after `timeoutMs`. */
export async function settleProcessesUnder(dir: string, timeoutMs = 10_000): Promise<ProcessInfo[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = processesUnder(dir);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Last resort after a failed test: SIGKILLs, by pid, every process still
 * under `dir` (a test's own temporary data directory), sandbox leaders
 * first so their pid namespaces go with them. Returns what it killed.
 */
export function killProcessesUnder(dir: string): ProcessInfo[] {
  return killAll(processesUnder(dir));
}

/**
 * SIGKILLs, by pid, the processes working inside `dir`: the git runs of a
 * server that died, in the repository store. A sandbox that merely has a
 * directory of it bound in (its command line names it) is left alone.
 */
export function killProcessesWorkingIn(dir: string): ProcessInfo[] {
  return killAll(processesUnder(dir).filter(({ cwd }) => cwd === dir || cwd.startsWith(`${dir}/`)));
}

function killAll(found: ProcessInfo[]): ProcessInfo[] {
  for (const { pid } of found) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  return found;
}
