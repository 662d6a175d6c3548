/**
 * Locks that hold across every server process sharing one Postgres:
 * session-level advisory locks, one dedicated connection per lock held.
 *
 * Used where an in-process mutex is not enough, e.g. the repository store on
 * a volume shared by several servers: two processes must not run git on one
 * mirror at once.
 *
 * Invariants:
 * - Inside one process, work on one key is serialized before a connection is
 *   taken, so a process holds at most one connection per key.
 * - A lock is released when its work ends, or when its connection dies (then
 *   another process may enter while the work still runs: the failure mode the
 *   caller must accept).
 * - Keys are hashed to a 64-bit lock id (sha-256 of `umbra-lock:<key>`).
 */
import { createHash } from "node:crypto";
import pg from "pg";

export interface PgAdvisoryLocksOptions {
  url: string;
  /** Locks held at once (each on its own connection). Default 8. */
  poolSize?: number;
  onError?(error: Error): void;
}

export class PgAdvisoryLocks {
  private readonly pool: pg.Pool;
  private readonly tails = new Map<string, Promise<unknown>>();

  constructor(options: PgAdvisoryLocksOptions) {
    this.pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 8 });
    this.pool.on("connect", (client) => client.on("error", (error) => options.onError?.(error)));
    this.pool.on("error", () => {});
  }

  /** Runs `fn` while holding the lock for `key` in every process. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(
      () => this.locked(key, fn),
      () => this.locked(key, fn),
    );
    const tail = result.catch(() => {});
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  async close(): Promise<void> {
    await Promise.all([...this.tails.values()]);
    await this.pool.end();
  }

  private async locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const id = lockId(key);
    const client = await this.pool.connect();
    try {
      await client.query("SELECT pg_advisory_lock($1)", [id]);
    } catch (error) {
      client.release(true);
      throw error;
    }
    try {
      return await fn();
    } finally {
      // A failed unlock means the session is gone, and its locks with it: drop the connection.
      const unlocked = await client.query("SELECT pg_advisory_unlock($1)", [id]).then(
        () => true,
        () => false,
      );
      client.release(!unlocked);
    }
  }
}

/** The signed 64-bit advisory lock id of `key`, as a decimal string. */
export function lockId(key: string): string {
  return createHash("sha256").update(`umbra-lock:${key}`).digest().readBigInt64BE(0).toString();
}
