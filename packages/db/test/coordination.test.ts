/**
 * What several server processes on one Postgres coordinate with: the
 * LISTEN/NOTIFY message queue (order, size, reconnection), advisory locks
 * that hold across connection pools, and the embedded database refusing a
 * second opener.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createScratchPostgres, postgresAvailable, type ScratchPostgres } from "../../../test/support/databases";
import {
  DatabaseInUseError,
  lockEmbeddedDatabase,
  openDatabase,
  PgAdvisoryLocks,
  PgPubSub,
  type ReceivedMessage,
} from "../src/index";

const scratches: ScratchPostgres[] = [];
afterAll(async () => {
  for (const scratch of scratches) await scratch.drop();
});

async function migratedScratch(): Promise<ScratchPostgres> {
  const scratch = await createScratchPostgres();
  scratches.push(scratch);
  const database = await openDatabase({ databaseUrl: scratch.url, poolSize: 1 });
  await database.close();
  return scratch;
}

/** Resolves once `received` holds `count` messages. */
async function receivedAll(received: ReceivedMessage[], count: number, timeoutMs = 20_000): Promise<void> {
  const started = Date.now();
  while (received.length < count) {
    if (Date.now() - started > timeoutMs) throw new Error(`received ${received.length} of ${count}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe.runIf(await postgresAvailable())("PgPubSub", () => {
  it("delivers one sender's messages to another process in order, large ones through the table", async () => {
    const { url } = await migratedScratch();
    const sender = new PgPubSub({ url });
    const receiver = new PgPubSub({ url });
    const received: ReceivedMessage[] = [];
    receiver.subscribe("umbra_test", (message) => received.push(message));
    await Promise.all([sender.start(), receiver.start()]);
    try {
      // Every fifth message is past the NOTIFY limit; sent without waiting, as a server emits.
      const payloads = Array.from({ length: 100 }, (_, i) => `${i}:${"x".repeat(i % 5 === 0 ? 20_000 : 10)}`);
      for (const payload of payloads) void sender.publish("umbra_test", payload);
      await sender.flush();
      await receivedAll(received, payloads.length);
      expect(received.map((m) => m.payload)).toEqual(payloads);
      expect(received.every((m) => m.channel === "umbra_test" && m.sentAt <= Date.now())).toBe(true);
    } finally {
      await sender.close();
      await receiver.close();
    }
  });

  it("listens again after its connection is terminated, and hears what is sent afterwards", async () => {
    const scratch = await migratedScratch();
    const receiver = new PgPubSub({ url: scratch.url });
    const sender = new PgPubSub({ url: scratch.url });
    const received: ReceivedMessage[] = [];
    receiver.subscribe("umbra_test", (message) => received.push(message));
    await Promise.all([receiver.start(), sender.start()]);
    const admin = new pg.Client({ connectionString: scratch.url });
    await admin.connect();
    try {
      await sender.publish("umbra_test", "before");
      await receivedAll(received, 1);
      const ended = await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
      );
      expect(ended.rowCount).toBe(1);
      const started = Date.now();
      // Keep sending until the listener is back: what is sent while it is away is lost to it, by design.
      while (!received.some((m) => m.payload === "after")) {
        if (Date.now() - started > 20_000) throw new Error("the listener never came back");
        await sender.publish("umbra_test", "after");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(received[0]!.payload).toBe("before");
    } finally {
      await admin.end();
      await sender.close();
      await receiver.close();
    }
  });
});

describe.runIf(await postgresAvailable())("PgAdvisoryLocks", () => {
  it("never lets two processes' pools into one key at once, and lets other keys run alongside", async () => {
    const { url } = await migratedScratch();
    const a = new PgAdvisoryLocks({ url });
    const b = new PgAdvisoryLocks({ url });
    let inside = 0;
    let most = 0;
    const spans: string[] = [];
    const critical = (who: string) => async () => {
      inside++;
      most = Math.max(most, inside);
      spans.push(`${who}+`);
      await new Promise((resolve) => setTimeout(resolve, 20));
      spans.push(`${who}-`);
      inside--;
    };
    try {
      let otherKeyRanDuring = false;
      const slow = a.run("repo-one", async () => {
        await new Promise((resolve) => setTimeout(resolve, 300));
      });
      await b.run("repo-two", async () => {
        otherKeyRanDuring = true;
      });
      await slow;
      expect(otherKeyRanDuring).toBe(true);
      await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).run("repo-one", critical(i % 2 ? "a" : "b"))),
      );
      expect(most).toBe(1);
      expect(spans).toHaveLength(20);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe("the embedded database", () => {
  it("refuses a second opener of one data directory, loudly, until the first closes it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "umbra-pglite-lock-"));
    try {
      const first = await openDatabase({ dataDir: dir });
      const second = openDatabase({ dataDir: dir });
      await expect(second).rejects.toBeInstanceOf(DatabaseInUseError);
      await expect(second).rejects.toThrow(/ONE server process; to run several servers use Postgres \(DATABASE_URL\)/);
      await first.close();
      const release = lockEmbeddedDatabase(join(dir, "db")); // free again: the next server may open it
      release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000); // an embedded database on disk: its first start runs initdb
});
