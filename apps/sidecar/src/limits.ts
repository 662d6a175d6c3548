/**
 * Telling a command that hit the sandbox's limits from one that failed on its
 * own: the kernel's cgroup counters (OOM kills, refused forks) before and
 * after, and the workspace volume's free space.
 *
 * Invariants:
 * - A counter that cannot be read counts as unchanged: a limit is reported
 *   only on evidence, never guessed from an exit code.
 * - Messages name the limit and its size ("killed: memory limit 2048 MB
 *   reached"), so the task says what happened and what to change.
 */
import { readFile, statfs } from "node:fs/promises";
import type { AgentBoxSpec, CgroupCounter } from "@repo/workspace";

/** Below this many free bytes the workspace volume counts as full. */
const FULL_DISK_BYTES = 1024 * 1024;

export interface LimitCounters {
  oomKills: number;
  pidsMax: number;
  /** The volume was already full: a command that starts then did not fill it (and frees space lazily: ext4 returns blocks at its next journal commit). */
  diskFull: boolean;
}

async function readCounter(counter: CgroupCounter | undefined): Promise<number> {
  if (!counter) return 0;
  try {
    const text = await readFile(counter.file, "utf8");
    for (const line of text.split("\n")) {
      const [key, value] = line.trim().split(/\s+/);
      if (key === counter.key) return Number(value) || 0;
    }
  } catch {
    // unreadable: unchanged
  }
  return 0;
}

export class LimitWatch {
  constructor(
    private readonly spec: Pick<AgentBoxSpec, "limits" | "counters">,
    private readonly workspace: string,
  ) {}

  async counters(): Promise<LimitCounters> {
    const [oomKills, pidsMax, diskFull] = await Promise.all([
      readCounter(this.spec.counters.oomKills),
      readCounter(this.spec.counters.pidsMax),
      this.diskFull(),
    ]);
    return { oomKills, pidsMax, diskFull };
  }

  /** The process-limit message when forks were refused since `before`; null otherwise. */
  async pidsExceeded(before: LimitCounters): Promise<string | null> {
    if (!this.spec.counters.pidsMax) return null;
    const now = await readCounter(this.spec.counters.pidsMax);
    if (now <= before.pidsMax) return null;
    return `killed: process limit ${this.spec.limits.pids ?? "?"} reached (every process of the agent was stopped)`;
  }

  /**
   * What limit, if any, ended or crippled a command that started at `before`;
   * `sawDiskFull` when the volume was seen full while it ran.
   */
  async verdict(before: LimitCounters, sawDiskFull = false): Promise<string | undefined> {
    const after = await this.counters();
    if (after.oomKills > before.oomKills) {
      return `killed: memory limit ${this.spec.limits.memoryMb ?? "?"} MB reached`;
    }
    const pids = await this.pidsExceeded(before);
    if (pids) return pids;
    if (!before.diskFull && (sawDiskFull || (await this.diskFull()))) {
      return `disk limit ${this.spec.limits.diskMb} MB reached: the workspace volume is full`;
    }
    return undefined;
  }

  /** True when the disk limit is enforced and the volume has (next to) no room left. */
  async diskFull(): Promise<boolean> {
    if (this.spec.limits.diskMb === undefined) return false;
    try {
      const stats = await statfs(this.workspace);
      return stats.bavail * stats.bsize < FULL_DISK_BYTES;
    } catch {
      return false;
    }
  }
}
