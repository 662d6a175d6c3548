/**
 * Ids that say which server process holds something (a cleanup claim, the
 * ownership of a running task): `<role>:<host>:<pid>.<process start time>:<random>`.
 *
 * A process on the same host can then tell that a holder is gone — its pid no
 * longer runs, or runs a process that started at another time (a restarted
 * container's server gets the same pid) — instead of waiting out its lease.
 * Holders on other hosts are judged by their lease alone.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";

export interface ProcessIdentity {
  role: string;
  host: string;
  pid: number;
  startTime: string;
}

/** A new id for a holder of `role` in this process. */
export function processIdentity(role: string): string {
  return `${role}:${hostname()}:${process.pid}.${processStartTime(process.pid) ?? 0}:${randomUUID().slice(0, 8)}`;
}

/** The parts of an id made by processIdentity(); null for any other text. */
export function parseProcessIdentity(id: string): ProcessIdentity | null {
  const match = /^([a-z-]+):(.+):(\d+)\.(\d+):[0-9a-f]{8}$/.exec(id);
  return match ? { role: match[1]!, host: match[2]!, pid: Number(match[3]), startTime: match[4]! } : null;
}

/** True when `id` names a process of this host that no longer runs. False for other hosts and unknown ids. */
export function isGoneOnThisHost(id: string): boolean {
  const holder = parseProcessIdentity(id);
  if (!holder || holder.host !== hostname()) return false;
  return processStartTime(holder.pid) !== holder.startTime;
}

/** When `pid` started, in clock ticks since boot (Linux /proc), or null when unknown or not running. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}
