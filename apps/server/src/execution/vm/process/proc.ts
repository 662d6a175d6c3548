/**
 * Reading the host's process table for the process provider: is a recorded
 * sandbox still the process we started, which processes run below it, and
 * waiting for one to go away.
 *
 * A pid alone proves nothing after a restart (pids are reused), so a sandbox
 * counts as alive only when its /proc entry is not a zombie and its command
 * line still carries the sandbox's markers.
 */
import { readdir, readFile } from "node:fs/promises";

interface ProcStat {
  state: string;
  ppid: number;
}

async function readStat(pid: number | string): Promise<ProcStat | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name: state, ppid, pgrp, ...
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: state ?? "", ppid: Number(ppid) };
  } catch {
    return null;
  }
}

function isRunningState(stat: ProcStat | null): boolean {
  return stat !== null && stat.state !== "Z" && stat.state !== "X";
}

async function hasMarkers(pid: number | string, markers: readonly string[]): Promise<boolean> {
  try {
    const args = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
    return markers.every((marker) => args.includes(marker));
  } catch {
    return false;
  }
}

/** True while `pid` runs (not a zombie) and its command line contains every one of `markers`. */
export async function isLiveProcess(pid: number, markers: readonly string[]): Promise<boolean> {
  return isRunningState(await readStat(pid)) && (await hasMarkers(pid, markers));
}

/** True while `pid` runs and is not a zombie. */
export async function isRunning(pid: number): Promise<boolean> {
  return isRunningState(await readStat(pid));
}

/**
 * The children of `parent` from /proc/<pid>/task/<tid>/children: a few small
 * reads, where scanning the whole process table costs one read per process
 * on the host (tens of milliseconds with a few hundred, for every poll of a
 * sandbox being destroyed). Null when the kernel does not offer the file.
 */
async function childrenOf(parent: number): Promise<number[] | null> {
  let threads: string[];
  try {
    threads = await readdir(`/proc/${parent}/task`);
  } catch {
    return []; // the parent is gone, and its children with it (or re-parented)
  }
  try {
    const lists = await Promise.all(threads.map((tid) => readFile(`/proc/${parent}/task/${tid}/children`, "utf8")));
    return lists.flatMap((list) => list.split(" ").filter(Boolean).map(Number));
  } catch {
    return (await readStat(parent)) ? null : [];
  }
}

/** The running children of `parent` that carry every one of `markers`. */
export async function liveChildrenWithMarkers(parent: number, markers: readonly string[]): Promise<number[]> {
  const children = await childrenOf(parent);
  const pids = children ?? (await readdir("/proc")).filter((name) => /^\d+$/.test(name)).map(Number);
  const found: number[] = [];
  for (const pid of pids) {
    const stat = await readStat(pid);
    if (stat?.ppid === parent && isRunningState(stat) && (await hasMarkers(pid, markers))) found.push(pid);
  }
  return found;
}

/** True while a running child of `parent` carries every one of `markers`. */
export async function hasLiveChildWithMarkers(parent: number, markers: readonly string[]): Promise<boolean> {
  return (await liveChildrenWithMarkers(parent, markers)).length > 0;
}

/** Polls `condition` until it holds; resolves false if it still does not after `timeoutMs`. */
export async function waitUntil(
  condition: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 25,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Sends `signal` to `pid` (or its group when `group`); a process that is already gone is not an error. */
export function signalProcess(pid: number, signal: NodeJS.Signals, group: boolean): void {
  try {
    process.kill(group ? -pid : pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}
