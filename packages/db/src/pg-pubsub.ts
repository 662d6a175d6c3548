/**
 * Messages between the server processes that share one Postgres, on
 * LISTEN/NOTIFY: what the socket adapter and the replica bus travel on.
 *
 * Invariants:
 * - Order: the messages one process publishes reach every other listening
 *   process in the order they were published. Publishing is one queue per
 *   process (each NOTIFY commits before the next is sent), and a listener
 *   hands messages on one at a time, in the order Postgres delivered them,
 *   even when one must first be read from the table.
 * - Size: a payload too large for a NOTIFY (8000 bytes) is written to
 *   `replica_messages` first and the notification carries its row id; rows
 *   older than a minute are deleted.
 * - A listener whose connection breaks reconnects (with backoff) and listens
 *   again; what was published meanwhile is lost to it — consumers that must
 *   not miss a change also poll the database.
 * - Each message carries the time it was sent, so receivers can measure the lag.
 */
import pg from "pg";
import { z } from "zod";

/** Largest payload sent inline; the limit of a NOTIFY payload is 8000 bytes, the envelope takes the rest. */
const INLINE_LIMIT_BYTES = 7500;
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 10_000;
const ATTACHMENT_TTL_MS = 60_000;

export interface PgPubSubOptions {
  /** Postgres connection URL. */
  url: string;
  /** Connections used for publishing and reading attachments (the listener has its own). Default 2. */
  poolSize?: number;
  /** Reports a connection or query failure (never thrown: publishing is best effort). */
  onError?(error: Error, context: string): void;
  /** Hears each message received from another process's publish: how long it took, in ms (clocks of two hosts). */
  onReceived?(lagMs: number, channel: string): void;
}

export interface ReceivedMessage {
  channel: string;
  payload: string;
  /** When the sender published it, ms since the epoch (the sender's clock). */
  sentAt: number;
}

type Handler = (message: ReceivedMessage) => void;

/** What a notification carries: `s` sent at (ms since the epoch), and the payload inline (`d`) or its row id (`a`). */
const Envelope = z.union([
  z.object({ s: z.number(), d: z.string() }),
  z.object({ s: z.number(), a: z.number().int().positive() }),
]);
type Envelope = { s: number; d?: string; a?: number };

export class PgPubSub {
  private readonly pool: pg.Pool;
  private readonly handlers = new Map<string, Set<Handler>>();
  private listener: pg.PoolClient | null = null;
  private connecting: Promise<void> | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectDelay = RECONNECT_MIN_MS;
  private publishing: Promise<unknown> = Promise.resolve();
  private receiving: Promise<unknown> = Promise.resolve();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly options: PgPubSubOptions) {
    this.pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 2 });
    this.pool.on("connect", (client) => client.on("error", (error) => this.report(error, "connection")));
    this.pool.on("error", () => {}); // reported by the client's own listener
    this.sweeper = setInterval(() => void this.deleteOldAttachments(), ATTACHMENT_TTL_MS / 2);
    this.sweeper.unref();
  }

  /** Starts listening (resolves once LISTEN is in place, or after the first failed attempt; it retries). */
  start(): Promise<void> {
    return this.connect();
  }

  /** Calls `handler` for every message published on `channel` by any process (this one included). */
  subscribe(channel: string, handler: Handler): () => void {
    assertChannel(channel);
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
      this.listener?.query(`LISTEN "${channel}"`).catch((error) => this.report(error, "listen"));
    }
    set.add(handler);
    return () => set.delete(handler);
  }

  /** Queues `payload` for `channel`; resolves once it is sent (or failed, which is reported, not thrown). */
  publish(channel: string, payload: string): Promise<void> {
    assertChannel(channel);
    const sentAt = Date.now();
    const send = async () => {
      if (this.closed) return;
      try {
        let envelope: Envelope = { s: sentAt, d: payload };
        if (Buffer.byteLength(payload) > INLINE_LIMIT_BYTES) {
          const result = await this.pool.query<{ id: string }>(
            "INSERT INTO replica_messages (payload, created_at) VALUES ($1, $2) RETURNING id",
            [payload, new Date(sentAt)],
          );
          envelope = { s: sentAt, a: Number(result.rows[0]!.id) };
        }
        await this.pool.query("SELECT pg_notify($1, $2)", [channel, JSON.stringify(envelope)]);
      } catch (error) {
        this.report(error as Error, "publish");
      }
    };
    const sent = this.publishing.then(send);
    this.publishing = sent;
    return sent;
  }

  /** Waits until everything published so far has been sent. */
  flush(): Promise<void> {
    return this.publishing.then(() => undefined);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    clearInterval(this.sweeper);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const listener = this.listener;
    this.listener = null;
    if (listener) {
      listener.removeAllListeners("notification");
      listener.release(true);
    }
    await this.receiving.catch(() => undefined);
    await this.pool.end();
  }

  private connect(): Promise<void> {
    this.connecting ??= (async () => {
      try {
        const client = await this.pool.connect();
        if (this.closed) {
          client.release(true);
          return;
        }
        client.on("notification", (note) => this.enqueue(note.channel, note.payload ?? ""));
        client.once("end", () => this.lost(client));
        client.on("error", () => this.lost(client));
        for (const channel of this.handlers.keys()) await client.query(`LISTEN "${channel}"`);
        this.listener = client;
        this.reconnectDelay = RECONNECT_MIN_MS;
      } catch (error) {
        this.report(error as Error, "listen");
        this.scheduleReconnect();
      } finally {
        this.connecting = null;
      }
    })();
    return this.connecting;
  }

  private lost(client: pg.PoolClient): void {
    if (this.listener !== client || this.closed) return;
    this.listener = null;
    client.removeAllListeners("notification");
    client.release(true);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(RECONNECT_MAX_MS, this.reconnectDelay * 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  /** Hands notifications on one at a time, in arrival order, reading attachments first. */
  private enqueue(channel: string, raw: string): void {
    const deliver = async () => {
      const set = this.handlers.get(channel);
      if (!set || set.size === 0 || this.closed) return;
      let envelope: Envelope;
      try {
        envelope = parseEnvelope(raw);
      } catch (error) {
        this.report(error as Error, "parse");
        return;
      }
      let payload = envelope.d;
      if (payload === undefined && envelope.a !== undefined) {
        try {
          const result = await this.pool.query<{ payload: string }>(
            "SELECT payload FROM replica_messages WHERE id = $1",
            [envelope.a],
          );
          payload = result.rows[0]?.payload;
        } catch (error) {
          this.report(error as Error, "attachment");
        }
      }
      if (payload === undefined) return;
      this.options.onReceived?.(Date.now() - envelope.s, channel);
      for (const handler of set) {
        try {
          handler({ channel, payload, sentAt: envelope.s });
        } catch (error) {
          this.report(error as Error, "handler");
        }
      }
    };
    this.receiving = this.receiving.then(deliver, deliver);
  }

  private async deleteOldAttachments(): Promise<void> {
    try {
      await this.pool.query("DELETE FROM replica_messages WHERE created_at < $1", [
        new Date(Date.now() - ATTACHMENT_TTL_MS),
      ]);
    } catch (error) {
      this.report(error as Error, "sweep");
    }
  }

  private report(error: Error, context: string): void {
    if (this.closed) return;
    this.options.onError?.(error, context);
  }
}

function assertChannel(channel: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) throw new Error(`invalid channel name ${JSON.stringify(channel)}`);
}

function parseEnvelope(raw: string): Envelope {
  return Envelope.parse(JSON.parse(raw));
}
