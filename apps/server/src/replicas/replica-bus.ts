/**
 * Messages from one server process to the others sharing its database:
 * "this task changed" (so that a service waiting on a change hears of one
 * made elsewhere) and "stop this task's work" (for the process that owns it).
 *
 * With Postgres the bus travels on LISTEN/NOTIFY (@repo/db PgPubSub): in
 * order per sender, best effort — a process whose listening connection broke
 * misses what was sent meanwhile, so every waiter also re-reads the database.
 * With the embedded database there is only one process and the bus is local:
 * nothing to send, nothing to hear.
 */
import type { PgPubSub } from "@repo/db";
import { z } from "zod";
import type { Logger } from "../logger";

export const ReplicaMessage = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("task-changed"),
    from: z.string(),
    taskId: z.string().uuid(),
    version: z.number().int(),
  }),
  z.object({
    type: z.literal("stop"),
    from: z.string(),
    /** The owner the request is for. */
    to: z.string(),
    taskId: z.string().uuid(),
    reason: z.string(),
    byUser: z.boolean(),
  }),
]);
export type ReplicaMessage = z.infer<typeof ReplicaMessage>;
type Outgoing = ReplicaMessage extends infer M ? (M extends ReplicaMessage ? Omit<M, "from"> : never) : never;

export type ReplicaListener = (message: ReplicaMessage) => void;

export interface ReplicaBus {
  /** True when other server processes may share the database (and hear this one). */
  readonly shared: boolean;
  /** Sends to every other process; resolves once sent. */
  publish(message: Outgoing): Promise<void>;
  /** Hears what the other processes send. */
  subscribe(listener: ReplicaListener): () => void;
}

/** The bus of a server that is alone on its database. */
export class LocalReplicaBus implements ReplicaBus {
  readonly shared = false;
  async publish(): Promise<void> {}
  subscribe(): () => void {
    return () => {};
  }
}

export const REPLICA_CHANNEL = "umbra_replicas";

export class PgReplicaBus implements ReplicaBus {
  readonly shared = true;
  private readonly listeners = new Set<ReplicaListener>();

  constructor(
    private readonly pubsub: PgPubSub,
    /** This process: messages it sent itself are not handed back. */
    private readonly self: string,
    log: Logger,
  ) {
    pubsub.subscribe(REPLICA_CHANNEL, ({ payload }) => {
      let message: ReplicaMessage;
      try {
        message = ReplicaMessage.parse(JSON.parse(payload));
      } catch (error) {
        log.warn({ err: error }, "replicas.message.invalid");
        return;
      }
      if (message.from === self) return;
      for (const listener of this.listeners) {
        try {
          listener(message);
        } catch (error) {
          log.error({ err: error, type: message.type }, "replicas.listener.failed");
        }
      }
    });
  }

  publish(message: Outgoing): Promise<void> {
    return this.pubsub.publish(REPLICA_CHANNEL, JSON.stringify({ ...message, from: this.self }));
  }

  subscribe(listener: ReplicaListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
