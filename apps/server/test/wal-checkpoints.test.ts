/**
 * The server's checkpoints of the embedded database: asked for every minute
 * of its clock and by the indexer, one at a time, never failing the caller.
 * Real PGlite; the clock is a manual one.
 */
import { openDatabase } from "@repo/db";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../src/logger";
import { ManualClock } from "../src/utils/clock";
import { THRESHOLD_BYTES, WalCheckpoints } from "../src/utils/wal-checkpoints";

describe("WalCheckpoints", () => {
  let real: Awaited<ReturnType<typeof openDatabase>>;
  /** The thresholds checkpointIfDue was called with. */
  let calls: number[];
  let failNext: boolean;
  const counting = {
    checkpointIfDue: async (thresholdBytes: number) => {
      calls.push(thresholdBytes);
      if (failNext) {
        failNext = false;
        throw new Error("the database went away");
      }
      return real.checkpointIfDue!(thresholdBytes);
    },
  };

  beforeEach(async () => {
    real = await openDatabase();
    calls = [];
    failNext = false;
  });
  afterEach(() => real.close());

  it("asks every minute of its clock until stopped", async () => {
    const clock = new ManualClock();
    const checkpoints = new WalCheckpoints(counting, clock);
    checkpoints.start();
    checkpoints.start(); // a second start arms no second timer
    clock.advance(59_999);
    expect(calls).toEqual([]);
    clock.advance(1);
    await checkpoints.request(); // joins the one the timer started
    expect(calls).toEqual([THRESHOLD_BYTES]);
    clock.advance(60_000);
    await checkpoints.request();
    expect(calls).toHaveLength(2);
    await checkpoints.stop();
    clock.advance(10 * 60_000);
    await checkpoints.request();
    expect(calls).toHaveLength(2);
  });

  it("runs one request at a time: those made meanwhile wait for it", async () => {
    const checkpoints = new WalCheckpoints(counting, new ManualClock());
    await Promise.all([checkpoints.request(), checkpoints.request(), checkpoints.request()]);
    expect(calls).toHaveLength(1);
    await checkpoints.request();
    expect(calls).toHaveLength(2);
  });

  it("logs a failed checkpoint instead of throwing, and the next request tries again", async () => {
    const lines: string[] = [];
    const log = createLogger("info", { write: (line: string) => lines.push(line) });
    const checkpoints = new WalCheckpoints(counting, new ManualClock(), log);
    failNext = true;
    await expect(checkpoints.request()).resolves.toBeUndefined();
    expect(lines.some((line) => line.includes("db.checkpoint.failed") && line.includes("the database went away"))).toBe(
      true,
    );
    await checkpoints.request();
    expect(calls).toHaveLength(2);
  });

  it("does nothing for a database that checkpoints by itself", async () => {
    const clock = new ManualClock();
    const checkpoints = new WalCheckpoints({}, clock);
    expect(checkpoints.needed).toBe(false);
    checkpoints.start();
    clock.advance(10 * 60_000);
    await expect(checkpoints.request()).resolves.toBeUndefined();
  });
});
