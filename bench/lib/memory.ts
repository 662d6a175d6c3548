/**
 * Memory readings from /proc: this process's resident set (sampled, and the
 * kernel's own high-water mark), and the resident and proportional set sizes
 * of each `process` sandbox's process tree (bwrap, the sandbox's init, the
 * sidecar and whatever it runs).
 *
 * RSS counts shared pages (the node binary, libc) in full in every process;
 * PSS divides them among the processes sharing them, so the PSS of all
 * sandboxes adds up to what they really cost the host. The CPU time of a
 * sandbox's processes, read twice, tells what it costs while idle.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

function statusField(pid: number | "self", field: string): number {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  return match ? Number(match[1]) * 1024 : 0;
}

/** Resets the kernel's peak-RSS mark (VmHWM) of this process; false when the kernel refuses. */
export function resetPeakRss(): boolean {
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

export function peakRss(): number {
  return statusField("self", "VmHWM");
}

/** The host's MemAvailable: what could still be given to processes without swapping. */
export function hostMemoryAvailable(): number {
  const match = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync("/proc/meminfo", "utf8"));
  return match ? Number(match[1]) * 1024 : 0;
}

/**
 * Collects garbage twice, 400 ms apart (needs --expose-gc, as the runner
 * gives), and waits: a collection gives its pages back to the system over
 * the next moments, so an RSS read right after one would still count them.
 */
export async function settleMemory(): Promise<void> {
  for (let i = 0; i < 2; i++) {
    globalThis.gc?.();
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
}

export interface ProcessMemory {
  rssBytes: number;
  /** The kernel's high-water mark of the resident set (VmHWM). */
  peakRssBytes: number;
  /** Resident anonymous memory: heaps, WebAssembly memory, compiled code. */
  anonymousBytes: number;
  /** Resident file-backed memory: the node binary and the libraries it maps. */
  fileBytes: number;
}

/** Another process's memory, from /proc/<pid>/status and smaps_rollup. */
export function processMemory(pid: number): ProcessMemory {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(rollup)?.[1] ?? 0) * 1024;
  const rssBytes = statusField(pid, "VmRSS");
  const anonymousBytes = field("Anonymous");
  return {
    rssBytes,
    peakRssBytes: statusField(pid, "VmHWM"),
    anonymousBytes,
    fileBytes: Math.max(0, field("Rss") - anonymousBytes),
  };
}

/** Samples process.memoryUsage().rss every `intervalMs` until stopped. */
export class RssSampler {
  private readonly timer: NodeJS.Timeout;
  private max = 0;
  private count = 0;

  constructor(intervalMs = 50) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private sample(): void {
    const rss = process.memoryUsage.rss();
    this.count++;
    if (rss > this.max) this.max = rss;
  }

  stop(): { peakBytes: number; samples: number } {
    clearInterval(this.timer);
    this.sample();
    return { peakBytes: this.max, samples: this.count };
  }
}

/** Clock ticks per second of /proc times (USER_HZ; 100 on Linux). */
const TICKS = 100;

/** Every process's parent, and the CPU time it and its reaped children used (utime + stime + cutime + cstime, s). */
function processTable(): { parents: Map<number, number>; cpuSeconds: Map<number, number> } {
  const parents = new Map<number, number>();
  const cpuSeconds = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parents.set(Number(name), Number(fields[1]));
      cpuSeconds.set(Number(name), fields.slice(11, 15).reduce((sum, x) => sum + Number(x), 0) / TICKS);
    } catch {
      // the process ended while we looked
    }
  }
  return { parents, cpuSeconds };
}

function pss(pid: number): number {
  try {
    const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export interface SandboxMemory {
  taskId: string;
  processes: number;
  rssBytes: number;
  pssBytes: number;
  /** CPU time the sandbox's live processes (and the children they reaped) used since they started. */
  cpuSeconds: number;
}

/** The memory of every live sandbox under `<dataDir>/vms`, from the pids in each vm.json. */
export function sandboxMemory(dataDir: string): SandboxMemory[] {
  const vmsDir = join(dataDir, "vms");
  let names: string[];
  try {
    names = readdirSync(vmsDir);
  } catch {
    return [];
  }
  const { parents, cpuSeconds: cpu } = processTable();
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of parents) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  const result: SandboxMemory[] = [];
  for (const taskId of names) {
    let record: { launcherPid: number; pid: number };
    try {
      record = JSON.parse(readFileSync(join(vmsDir, taskId, "vm.json"), "utf8"));
    } catch {
      continue;
    }
    const root = parents.has(record.launcherPid) ? record.launcherPid : record.pid;
    if (!parents.has(root)) continue;
    const tree: number[] = [];
    for (const stack = [root]; stack.length > 0; ) {
      const pid = stack.pop()!;
      tree.push(pid);
      stack.push(...(children.get(pid) ?? []));
    }
    let rssBytes = 0;
    let pssBytes = 0;
    let cpuSeconds = 0;
    for (const pid of tree) {
      cpuSeconds += cpu.get(pid) ?? 0;
      try {
        rssBytes += statusField(pid, "VmRSS");
        pssBytes += pss(pid);
      } catch {
        // ended meanwhile
      }
    }
    result.push({ taskId, processes: tree.length, rssBytes, pssBytes, cpuSeconds });
  }
  return result;
}
