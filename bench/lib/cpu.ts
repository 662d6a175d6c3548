/**
 * How busy the machine is, from /proc/stat, and how much of that was not
 * this run: the benchmarks share the host with whatever else runs there, so
 * each section records the CPU other processes used while it ran, and the
 * runner waits for a quiet moment before starting a section.
 *
 * Our own share is this process's CPU time plus that of its reaped children
 * (/proc/self/stat utime, stime, cutime, cstime): each section runs in a
 * child process, which is reaped when it ends, together with everything it
 * started and reaped in turn.
 */
import { readFileSync } from "node:fs";
import { cpus } from "node:os";

/** Clock ticks per second of /proc times (USER_HZ; 100 on Linux). */
const TICKS = 100;

export interface CpuReading {
  busyTicks: number;
  totalTicks: number;
  ownTicks: number;
}

export function readCpu(): CpuReading {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0); // idle + iowait
  const total = fields.slice(0, 8).reduce((sum, x) => sum + x, 0); // without guest time, already in user
  const stat = readFileSync("/proc/self/stat", "utf8");
  const own = stat
    .slice(stat.lastIndexOf(")") + 2)
    .split(" ")
    .slice(11, 15) // utime, stime, cutime, cstime
    .reduce((sum, x) => sum + Number(x), 0);
  return { busyTicks: total - idle, totalTicks: total, ownTicks: own };
}

export interface CpuShare {
  /** Cores' worth of CPU the whole machine used, on average. */
  machineCores: number;
  /** Cores' worth used by this run. */
  ownCores: number;
  /** Cores' worth used by everything else. */
  otherCores: number;
}

export function cpuShare(from: CpuReading, to: CpuReading): CpuShare {
  const seconds = (to.totalTicks - from.totalTicks) / TICKS / cpus().length;
  if (seconds <= 0) return { machineCores: 0, ownCores: 0, otherCores: 0 };
  const machineCores = (to.busyTicks - from.busyTicks) / TICKS / seconds;
  const ownCores = (to.ownTicks - from.ownTicks) / TICKS / seconds;
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    machineCores: round(machineCores),
    ownCores: round(ownCores),
    otherCores: round(Math.max(0, machineCores - ownCores)),
  };
}

/**
 * Waits until other processes use less than `maxCores` over one second, for
 * at most `timeoutMs`. Resolves with the last second's reading.
 */
export async function waitForQuiet(
  maxCores: number,
  timeoutMs: number,
): Promise<{ otherCores: number; waitedMs: number }> {
  const started = Date.now();
  for (;;) {
    const from = readCpu();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const { otherCores } = cpuShare(from, readCpu());
    const waitedMs = Date.now() - started;
    if (otherCores < maxCores || waitedMs >= timeoutMs) return { otherCores, waitedMs };
  }
}
