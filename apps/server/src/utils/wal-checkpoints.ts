/**
 * Checkpoints for the embedded database, which writes none by itself
 * (Database.checkpointIfDue): one is asked for every minute of the clock,
 * and by heavy writers after each batch (the indexer), and happens only
 * when more than THRESHOLD_BYTES of WAL were written since the last. So the
 * WAL on disk stays near max_wal_size, plus what the server writes in a
 * minute outside the indexer; and a checkpoint is short: it writes at most
 * the 16 MB of shared buffers (10–50 ms measured).
 *
 * At most one request runs at a time; one made meanwhile waits for it
 * instead of starting another. A failure is logged, never thrown: a missed
 * checkpoint only leaves the WAL longer until the next one.
 */
import type { Database } from "@repo/db";
import type { Logger } from "../logger";
import type { Clock, TimerHandle } from "./clock";

/** WAL written since the last checkpoint that makes the next one due: half of max_wal_size (client.ts). */
export const THRESHOLD_BYTES = 32 * 1024 * 1024;
const INTERVAL_MS = 60_000;

export class WalCheckpoints {
  private timer: TimerHandle | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly database: Pick<Database, "checkpointIfDue">,
    private readonly clock: Clock,
    private readonly log?: Logger,
  ) {}

  /** Whether the database needs them at all (the embedded one does). */
  get needed(): boolean {
    return this.database.checkpointIfDue !== undefined;
  }

  /** Asks for a checkpoint every minute from now on, until stop(). */
  start(): void {
    if (!this.needed || this.stopped || this.timer) return;
    this.timer = this.clock.setTimer(() => {
      this.timer = null;
      void this.request().finally(() => this.start());
    }, INTERVAL_MS);
  }

  /** A checkpoint if one is due; resolves when it is written (or was not needed). */
  request(): Promise<void> {
    const checkpointIfDue = this.database.checkpointIfDue;
    if (!checkpointIfDue || this.stopped) return Promise.resolve();
    this.running ??= (async () => {
      try {
        const started = performance.now();
        if (await checkpointIfDue(THRESHOLD_BYTES)) {
          this.log?.info({ ms: Math.round(performance.now() - started) }, "db.checkpoint");
        }
      } catch (error) {
        this.log?.warn({ err: error }, "db.checkpoint.failed: the WAL stays until the next one");
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  /** Ends the timer and waits for a checkpoint under way; request() does nothing from then on. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
    await this.running;
  }
}
