/**
 * The sandbox's way out: a TCP listener on 127.0.0.1:<port> inside the
 * sandbox's network namespace (which has nothing but loopback) that relays
 * each connection, byte for byte, to the egress proxy's unix socket mounted
 * from the host. The agent's HTTP_PROXY points here; the proxy on the host
 * decides what may pass.
 *
 * Loopback forwards do the same for one host-loopback endpoint the policy
 * allows (a model server on the host): a listener on the same port of the
 * sandbox's loopback whose connections are tunnelled (CONNECT) through the
 * proxy, which still decides.
 *
 * Invariant: a failing connection (proxy gone, peer reset, refused tunnel)
 * ends that connection only, never the sidecar.
 */
import { connect, createServer, type Socket } from "node:net";
import type { Logger } from "./logger";

export interface EgressForwarder {
  /** Stops listening and ends every relayed connection. */
  close(): void;
}

/** Most bytes of a CONNECT answer's head read before giving up on it. */
const TUNNEL_HEAD_LIMIT = 8192;

/** Sends CONNECT `target` on `upstream`; resolves with what followed the answer's head once it is 200. */
function openTunnel(upstream: Socket, target: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end === -1) {
        if (head.length > TUNNEL_HEAD_LIMIT) reject(new Error("the proxy's answer is too long"));
        return;
      }
      upstream.off("data", onData);
      const status = head.subarray(0, head.indexOf("\r\n")).toString("latin1");
      if (/^HTTP\/1\.[01] 200 /.test(status)) resolve(head.subarray(end + 4));
      else reject(new Error(`the egress proxy refused ${target}: ${status}`));
    };
    upstream.on("data", onData);
    upstream.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`);
  });
}

function relay(port: number, socketPath: string, log: Logger, tunnelTo?: string): Promise<EgressForwarder> {
  const open = new Set<Socket>();
  const server = createServer((client: Socket) => {
    const upstream = connect(socketPath);
    if (tunnelTo) {
      client.pause();
      void openTunnel(upstream, tunnelTo).then(
        (rest) => {
          if (rest.length > 0) client.write(rest);
          client.pipe(upstream);
          upstream.pipe(client);
          client.resume();
        },
        (error: Error) => {
          log.warn({ target: tunnelTo, reason: error.message }, "egress.tunnel_refused");
          client.destroy();
          upstream.destroy();
        },
      );
    }
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
    if (!tunnelTo) {
      client.pipe(upstream);
      upstream.pipe(client);
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      server.on("error", (error) => log.error({ err: error }, "egress.forwarder_failed"));
      log.info({ port, target: tunnelTo }, "egress.forwarding");
      resolve({
        close: () => {
          server.close();
          for (const socket of open) socket.destroy();
        },
      });
    });
  });
}

/** Relays 127.0.0.1:`port` (the proxy address inside) to the egress socket. */
export function startEgressForwarder(port: number, socketPath: string, log: Logger): Promise<EgressForwarder> {
  return relay(port, socketPath, log);
}

/** Tunnels 127.0.0.1:`port` through the egress proxy to `target` (host:port on the host's side). */
export function startLoopbackForward(
  port: number,
  target: string,
  socketPath: string,
  log: Logger,
): Promise<EgressForwarder> {
  return relay(port, socketPath, log, target);
}
