/**
 * The embedded database is single-process: PGlite runs Postgres inside one
 * process, and a second process opening the same files would corrupt them.
 * A lock file beside the data directory (`<dir>.lock`, outside it so that
 * initdb finds the directory empty: host, pid, process start time) makes a
 * second server refuse to start, loudly, instead.
 *
 * A lock left by a process of this host that no longer runs (a crash) is
 * taken over. A lock of another host (a shared volume) cannot be checked and
 * is refused with the path to remove once that server is known to be gone.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";

export class DatabaseInUseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DatabaseInUseError";
  }
}

interface LockHolder {
  host: string;
  pid: number;
  startTime: string;
}

/** Takes the lock of the embedded database in `dir`; returns the function that releases it. */
export function lockEmbeddedDatabase(dir: string): () => void {
  const file = `${dir.replace(/\/+$/, "")}.lock`;
  const me: LockHolder = { host: hostname(), pid: process.pid, startTime: startTime(process.pid) ?? "0" };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, JSON.stringify(me), { flag: "wx", mode: 0o600 });
      return () => rmSync(file, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const holder = readHolder(file);
    if (holder && holder.host !== me.host) {
      throw new DatabaseInUseError(
        `the embedded database in ${dir} is open by a server on host ${holder.host} (pid ${holder.pid}). ` +
          "The embedded database (PGlite) serves ONE server process; to run several servers use Postgres " +
          `(DATABASE_URL). If that server is gone, remove ${file}.`,
      );
    }
    if (holder && startTime(holder.pid) === holder.startTime) {
      throw new DatabaseInUseError(
        `the embedded database in ${dir} is already open by server process ${holder.pid}. ` +
          "The embedded database (PGlite) serves ONE server process; to run several servers use Postgres (DATABASE_URL).",
      );
    }
    rmSync(file, { force: true }); // left by a process that no longer runs
  }
  throw new DatabaseInUseError(`could not take the lock ${file} of the embedded database`);
}

function readHolder(file: string): LockHolder | null {
  try {
    const value = JSON.parse(readFileSync(file, "utf8")) as Partial<LockHolder>;
    if (typeof value.host !== "string" || typeof value.pid !== "number" || typeof value.startTime !== "string") {
      return null;
    }
    return { host: value.host, pid: value.pid, startTime: value.startTime };
  } catch {
    return null;
  }
}

/** When `pid` started (Linux /proc, clock ticks since boot), or null when it does not run. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}
