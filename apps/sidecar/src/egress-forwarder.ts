/**
 * The sandbox's way out: a TCP listener on 127.0.0.1:<port> inside the
 * sandbox's network namespace (which has nothing but loopback) that relays
 * each connection, byte for byte, to the egress proxy's unix socket mounted
 * from the host. The agent's HTTP_PROXY points here; the proxy on the host
 * decides what may pass.
 *
 * Invariant: a failing connection (proxy gone, peer reset) ends that
 * connection only, never the sidecar.
 */
import { connect, createServer, type Socket } from "node:net";
import type { Logger } from "./logger";

export interface EgressForwarder {
  /** Stops listening and ends every relayed connection. */
  close(): void;
}

export function startEgressForwarder(port: number, socketPath: string, log: Logger): Promise<EgressForwarder> {
  const open = new Set<Socket>();
  const server = createServer((client: Socket) => {
    const upstream = connect(socketPath);
    open.add(client);
    open.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", (error) => {
      log.warn({ err: error }, "egress.relay_failed");
      end();
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      server.on("error", (error) => log.error({ err: error }, "egress.forwarder_failed"));
      log.info({ port }, "egress.forwarding");
      resolve({
        close: () => {
          server.close();
          for (const socket of open) socket.destroy();
        },
      });
    });
  });
}
