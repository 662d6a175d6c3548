/**
 * The Socket.IO adapter for several server processes on one Postgres: every
 * event emitted to a task's room by any process reaches that room's clients
 * on every process, in the order the emitting process sent them.
 *
 * It is socket.io-adapter's own ClusterAdapterWithHeartbeat (rooms, acks,
 * server counting) over @repo/db's PgPubSub (LISTEN/NOTIFY with an ordered
 * publish queue, an ordered receive queue and a table for payloads past the
 * NOTIFY limit). The published @socket.io/postgres-adapter sends each
 * message on whichever pool connection is free and reads large payloads
 * asynchronously on arrival, so a process's events can overtake each other;
 * a task page must see `step-start` before `step-complete`.
 */
import type { PgPubSub } from "@repo/db";
import type { Namespace } from "socket.io";
import {
  type ClusterAdapterOptions,
  ClusterAdapterWithHeartbeat,
  type ClusterMessage,
  type ClusterResponse,
} from "socket.io-adapter";
import { z } from "zod";
import type { Logger } from "../logger";

export const SOCKET_CHANNEL = "umbra_socket";

/** What every cluster message has; the rest is socket.io-adapter's own structure. */
const ClusterEnvelope = z.looseObject({ uid: z.string(), nsp: z.string(), type: z.number().int() });

class PgClusterAdapter extends ClusterAdapterWithHeartbeat {
  constructor(
    nsp: Namespace,
    options: ClusterAdapterOptions,
    private readonly pubsub: PgPubSub,
  ) {
    super(nsp, options);
  }

  protected override async doPublish(message: ClusterMessage): Promise<string> {
    await this.pubsub.publish(SOCKET_CHANNEL, JSON.stringify(message));
    return "";
  }

  protected override async doPublishResponse(_requesterUid: string, response: ClusterResponse): Promise<void> {
    await this.pubsub.publish(SOCKET_CHANNEL, JSON.stringify(response));
  }
}

/** The adapter class for `io.adapter()`: one adapter per namespace, all on `pubsub`. */
export function createPgSocketAdapter(pubsub: PgPubSub, log: Logger, options: ClusterAdapterOptions = {}) {
  const adapters = new Map<string, PgClusterAdapter>();
  pubsub.subscribe(SOCKET_CHANNEL, ({ payload }) => {
    let message: ClusterMessage;
    try {
      message = ClusterEnvelope.parse(JSON.parse(payload)) as unknown as ClusterMessage;
    } catch (error) {
      log.warn({ err: error }, "socket.adapter.message.invalid");
      return;
    }
    // Responses (acks, counts) come this way too: the adapter tells them apart by type.
    adapters.get(message.nsp)?.onMessage(message);
  });
  // socket.io constructs the adapter of each namespace with `new`.
  return class extends PgClusterAdapter {
    constructor(nsp: Namespace) {
      super(nsp, options, pubsub);
      adapters.set(nsp.name, this);
    }

    override close() {
      adapters.delete(this.nsp.name);
      return super.close();
    }
  };
}
