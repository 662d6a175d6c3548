/**
 * Riding out a database that went away for a moment (Postgres restarted, a
 * failover, connections ended by an administrator): the writes that move a
 * task — status changes, a task's creation, its messages — are retried on
 * connection errors until the database answers again or `deadlineMs` is
 * over. Without this, one failed write in the background leaves a task
 * INITIALIZING or RUNNING with nothing working on it.
 *
 * Reads are retried the same way, for less long (DB_READ_RETRY_DEADLINE_MS).
 *
 * Only connection-level failures are retried; a constraint violation or a
 * refused transition fails at once. A retried write is a whole transaction
 * run again, so its guards are checked again against the row as it is now.
 * (A connection lost during COMMIT leaves the outcome unknown; the rerun then
 * finds the row already moved and reports it like any lost race.)
 */

/** How long a task's writes wait for the database to come back, in ms. */
export const DB_RETRY_DEADLINE_MS = 60_000;

/**
 * How long a read waits, in ms: long enough to step over a connection that
 * died while idle in the pool (the pool learns of it a moment too late),
 * short enough that a request fails while the database is really down.
 */
export const DB_READ_RETRY_DEADLINE_MS = 5_000;

/** Postgres error classes and codes that mean "the connection or the server went away". */
const TRANSIENT_CODES = new Set([
  "57P01",
  "57P02",
  "57P03",
  "53300",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
]);
const TRANSIENT_MESSAGES = [
  /connection terminated/i,
  /connection error and is not queryable/i,
  /not currently accepting connections/i,
  /the database system is (starting up|shutting down|in recovery mode)/i,
];

/** True when `error` (or an error it wraps) says the database connection was lost or refused. */
export function isTransientDatabaseError(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    const { code, message, cause } = current as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof code === "string" && (TRANSIENT_CODES.has(code) || code.startsWith("08"))) return true;
    if (typeof message === "string" && TRANSIENT_MESSAGES.some((pattern) => pattern.test(message))) return true;
    current = cause;
  }
  return false;
}

export interface RetryOptions {
  /** Give up (rethrow the last error) after this long, in ms. */
  deadlineMs: number;
  /** Called before each retry, e.g. to log. */
  onRetry?(error: unknown, attempt: number): void;
}

/** Runs `fn`, running it again after a transient database error (backoff 50 ms doubling to 2 s). */
export async function retryTransient<T>(fn: () => Promise<T>, { deadlineMs, onRetry }: RetryOptions): Promise<T> {
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      const pause = Math.min(2000, 50 * 2 ** (attempt - 1));
      if (!isTransientDatabaseError(error) || Date.now() - started + pause > deadlineMs) throw error;
      onRetry?.(error, attempt);
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
}

/** Runs the read `fn`, again after a transient database error, for up to DB_READ_RETRY_DEADLINE_MS. */
export function retryRead<T>(fn: () => Promise<T>): Promise<T> {
  return retryTransient(fn, { deadlineMs: DB_READ_RETRY_DEADLINE_MS });
}
