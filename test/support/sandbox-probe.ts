/**
 * Looking at process-provider sandboxes from the outside, the way an
 * operator would: their record on disk, their processes in /proc, their
 * sidecar's socket (seen from inside the sandbox's network namespace), their
 * task branches in the repository store.
 * Used by tests that freeze, kill or inspect sandboxes of a server running
 * in another process.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export interface SandboxRecordView {
  /** Leader of the sandbox's process group. */
  pid: number;
  /** The process the provider spawned (bwrap): its environment holds the sidecar's token. */
  launcherPid: number;
  /** `unix:<socket>`; unset until the sidecar listens. */
  endpoint?: string;
}

export function sandboxDir(dataDir: string, taskId: string): string {
  return join(dataDir, "vms", taskId);
}

/** The sandbox's vm.json, or null while there is none. */
export function readSandboxRecord(dataDir: string, taskId: string): SandboxRecordView | null {
  try {
    return JSON.parse(readFileSync(join(sandboxDir(dataDir, taskId), "vm.json"), "utf8")) as SandboxRecordView;
  } catch {
    return null;
  }
}

function argv(pid: string): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return [];
  }
}

/** The pids running now; processes started later are not in it (pids are not reused while a process lives). */
export function runningPids(): Set<number> {
  return new Set(
    readdirSync("/proc")
      .filter((name) => /^\d+$/.test(name))
      .map(Number),
  );
}

/**
 * Pid of the sidecar (the node process, not bubblewrap around it) of a task's
 * sandbox, found by the marker the process provider puts on its command line.
 * Pids in `skip` are not looked at, which makes a look cheap enough to spin on.
 */
export function sidecarPid(taskId: string, skip: ReadonlySet<number> = new Set()): number | null {
  const marker = `--umbra-sandbox=${taskId}`;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || skip.has(Number(name))) continue;
    const args = argv(name);
    if (args.includes(marker) && !args[0]!.endsWith("bwrap")) return Number(name);
  }
  return null;
}

/** The process's state letter (R, S, T, Z…) and command line, or null when it is gone. */
export function processState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
    return `${stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0]} ${cmdline.slice(0, 200)}`;
  } catch {
    return null;
  }
}

/** True while `pid` runs and is not a zombie. */
export function processRunning(pid: number): boolean {
  const state = processState(pid)?.[0];
  return state !== undefined && state !== "Z" && state !== "X";
}

/** The environment a process started with (/proc/<pid>/environ). */
export function processEnvironment(pid: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")) {
    const at = entry.indexOf("=");
    if (at > 0) env[entry.slice(0, at)] = entry.slice(at + 1);
  }
  return env;
}

/**
 * Bytes that arrived on connections to the sandbox's sidecar socket and that
 * the sidecar has not read yet: a request waiting on a frozen sidecar. Read
 * with `ss` inside the sandbox's network namespace (unix sockets are listed
 * per namespace).
 */
export function unreadBytesAtSidecar(record: SandboxRecordView): number {
  const socket = record.endpoint?.replace(/^unix:/, "") ?? "";
  const inside = socket.replace(/^.*\/sockets\//, "/run/umbra/sockets/");
  const listing = execFileSync("nsenter", ["-t", String(record.pid), "-n", "ss", "-xnH"], { encoding: "utf8" });
  let total = 0;
  for (const line of listing.split("\n")) {
    const fields = line.trim().split(/\s+/);
    // Netid State Recv-Q Send-Q Local-path Local-inode Peer-path Peer-inode
    if (fields[1] !== "ESTAB" || (fields[4] !== inside && fields[4] !== socket)) continue;
    total += Number(fields[2]) || 0;
  }
  return total;
}

/** The bare mirrors of the repository store. */
export function mirrors(dataDir: string): string[] {
  const root = join(dataDir, "repos");
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((name) => name.endsWith(".git"))
    .map((name) => join(root, name));
}

/** Head of `umbra/<taskId>` in the repository store, or null when no mirror has the branch. */
export function taskBranchHead(dataDir: string, taskId: string): string | null {
  for (const mirror of mirrors(dataDir)) {
    try {
      return execFileSync("git", ["-C", mirror, "rev-parse", "--verify", "-q", `refs/heads/umbra/${taskId}`], {
        encoding: "utf8",
      }).trim();
    } catch {
      // not in this mirror
    }
  }
  return null;
}

/** True when `sha` is on the task branch (the branch head is `sha` or descends from it). */
export function branchContains(dataDir: string, taskId: string, sha: string): boolean {
  for (const mirror of mirrors(dataDir)) {
    try {
      execFileSync("git", ["-C", mirror, "merge-base", "--is-ancestor", sha, `refs/heads/umbra/${taskId}`], {
        stdio: "ignore",
      });
      return true;
    } catch {
      // not an ancestor here, or no such branch
    }
  }
  return false;
}

/** Files at the head of the task branch. */
export function branchFiles(dataDir: string, taskId: string): string[] {
  for (const mirror of mirrors(dataDir)) {
    try {
      return execFileSync("git", ["-C", mirror, "ls-tree", "-r", "--name-only", `refs/heads/umbra/${taskId}`], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      })
        .split("\n")
        .filter(Boolean);
    } catch {
      // not in this mirror
    }
  }
  return [];
}
