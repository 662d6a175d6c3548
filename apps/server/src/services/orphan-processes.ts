/**
 * Processes a dead server left running in its data directory: git against
 * the repository store, agent commands in local workspaces. A server that is
 * SIGKILLed cannot stop its children, so they run on; a fetch still writing
 * into a mirror makes the next server's fetch of the same mirror fail, and an
 * agent command still writing into a workspace races the commit that saves
 * the interrupted turn. Start-up recovery ends them before it does anything
 * else.
 *
 * A process counts as such an orphan only when all hold: its working
 * directory lies in `<dataDir>/repos` or `<dataDir>/workspaces`, its
 * environment carries a git identity the server gives its own processes
 * (its git runs, or agent commands), and the server that started it is gone
 * — walking up its parents through processes with that identity ends at
 * init (a dead parent's children are handed to it), not at a live server.
 * So a server sharing its data directory with others (several replicas on
 * one host) never ends another live server's git or agent commands. An
 * operator's shell inside a workspace has no such identity and is left
 * alone. Sandboxes are not touched here: their VM provider owns them.
 *
 * Reads /proc; where there is none, nothing is found.
 */
import { readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { AGENT_GIT_IDENTITY } from "@repo/workspace";
import { SERVER_GIT_EMAIL } from "../repository/repository-store";

const SERVER_EMAILS = new Set([SERVER_GIT_EMAIL, AGENT_GIT_IDENTITY.email]);

async function describe(pid: string): Promise<{ cwd: string; email: string | undefined; ppid: number } | null> {
  try {
    const [cwd, environ, stat] = await Promise.all([
      readlink(`/proc/${pid}/cwd`),
      readFile(`/proc/${pid}/environ`, "utf8"),
      readFile(`/proc/${pid}/stat`, "utf8"),
    ]);
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (state === "Z" || state === "X") return null;
    const email = environ
      .split("\0")
      .find((entry) => entry.startsWith("GIT_AUTHOR_EMAIL="))
      ?.slice("GIT_AUTHOR_EMAIL=".length);
    return { cwd, email, ppid: Number(ppid) };
  } catch {
    return null; // gone, or not ours to read
  }
}

/**
 * Pids of processes a dead server left in `dataDir` (see the module comment);
 * with `taskId`, only those in that task's local workspace.
 */
export async function findOrphanedProcesses(dataDir: string, taskId?: string): Promise<number[]> {
  let names: string[];
  try {
    names = (await readdir("/proc")).filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  const roots = taskId ? [join(dataDir, "workspaces", taskId)] : [join(dataDir, "repos"), join(dataDir, "workspaces")];
  const found: number[] = [];
  for (const name of names) {
    if (Number(name) === process.pid) continue;
    const info = await describe(name);
    if (!info || info.ppid === process.pid || !info.email || !SERVER_EMAILS.has(info.email)) continue;
    if (!roots.some((root) => info.cwd === root || info.cwd.startsWith(`${root}/`))) continue;
    if (await startedByInit(info.ppid)) found.push(Number(name));
  }
  return found;
}

/**
 * True when the chain of parents from `ppid`, through processes carrying the
 * server's identity, ends at init: the server that started it is gone.
 */
async function startedByInit(ppid: number): Promise<boolean> {
  let parent = ppid;
  for (let depth = 0; depth < 64; depth++) {
    if (parent <= 1) return true;
    if (parent === process.pid) return false;
    const info = await describe(String(parent));
    if (!info) return true; // it exited while we looked: its children go to init
    if (!info.email || !SERVER_EMAILS.has(info.email)) return false; // a live server (or another program) started it
    parent = info.ppid;
  }
  return false;
}

/** SIGKILLs the orphans of `dataDir` and waits (up to `timeoutMs`) until they are gone. Returns their pids. */
export async function endOrphanedProcesses(dataDir: string, timeoutMs = 2000, taskId?: string): Promise<number[]> {
  const orphans = await findOrphanedProcesses(dataDir, taskId);
  for (const pid of orphans) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const alive = await Promise.all(orphans.map((pid) => describe(String(pid))));
    if (alive.every((info) => info === null)) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return orphans;
}
