/**
 * Sidecar entry point: reads the configuration, serves the workspace, and
 * announces itself with exactly one JSON line on stdout —
 * `{"event":"listening","socket":"/path"}` on a unix socket, or
 * `{"event":"listening","port":N,"host":"..."}` on TCP — which is how the
 * process provider learns where it listens. Everything else goes to stderr
 * as JSON logs. Extra command-line arguments are ignored; the process
 * provider passes one to make the sandbox recognisable in the process table.
 *
 * In a process-provider sandbox (SIDECAR_AGENT_BOX set) commands and git run
 * in the agent's own sandbox (agent-box.ts), and the egress forwarder gives
 * them their one way out.
 *
 * SIGTERM/SIGINT stop running commands (their whole process groups) and close
 * the server; the process then exits once nothing is pending.
 */
import { chmodSync, rmSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { createLocalExecutor, setGitLauncher } from "@repo/workspace";
import { AgentBox } from "./agent-box";
import { ConfigError, loadConfig, type SidecarConfig } from "./config";
import { type EgressForwarder, startEgressForwarder, startLoopbackForward } from "./egress-forwarder";
import { LimitWatch } from "./limits";
import { createLogger, type Logger } from "./logger";
import type { SandboxContext } from "./routes";
import { createSidecarServer } from "./server";

/** Upper bound on a graceful stop before the process exits regardless, ms. */
const SHUTDOWN_DEADLINE_MS = 5000;

interface Sandbox {
  context: SandboxContext;
  /** Ends the agent's processes and the egress forwarder. */
  close(): void;
}

async function sandboxFor(config: SidecarConfig, log: Logger): Promise<Sandbox | undefined> {
  const spec = config.agentBox;
  if (!spec) return undefined;
  const box = new AgentBox(spec, config.workspace, log.child({ component: "agent-box" }));
  setGitLauncher(box.gitLauncher);
  const forwarders: EgressForwarder[] = [];
  if (spec.egress) {
    forwarders.push(await startEgressForwarder(spec.egress.port, spec.egress.socket, log));
    for (const forward of spec.loopbackForwards) {
      try {
        forwarders.push(await startLoopbackForward(forward.port, forward.target, spec.egress.socket, log));
      } catch (error) {
        log.error({ err: error, port: forward.port }, "egress.loopback_forward_failed");
      }
    }
  }
  // Started now but not waited for: it comes up while the sidecar starts listening, and every
  // request waits for it anyway (server.ts).
  box.ensure().catch((error) => log.error({ err: error }, "agent_box.start_failed"));
  return {
    context: { box, limits: new LimitWatch(spec, config.workspace) },
    close: () => {
      box.kill();
      for (const forwarder of forwarders) forwarder.close();
    },
  };
}

function listen(sidecar: ReturnType<typeof createSidecarServer>, config: SidecarConfig, log: Logger): void {
  const { server } = sidecar;
  server.on("error", (error) => {
    log.fatal({ err: error }, "sidecar.listen_failed");
    process.exit(1);
  });
  if ("socket" in config.listen) {
    const socket = config.listen.socket;
    rmSync(socket, { force: true });
    server.listen(socket, () => {
      // Only the server (root on the host) connects; nobody else inside needs to.
      chmodSync(socket, 0o600);
      process.stdout.write(`${JSON.stringify({ event: "listening", socket })}\n`);
      log.info({ socket, workspace: config.workspace }, "sidecar.listening");
    });
    return;
  }
  const { host, port } = config.listen;
  server.listen(port, host, () => {
    const { port: bound } = server.address() as AddressInfo;
    process.stdout.write(`${JSON.stringify({ event: "listening", port: bound, host })}\n`);
    log.info({ port: bound, host, workspace: config.workspace }, "sidecar.listening");
  });
}

async function main() {
  // The provider stops reading stdout after the listening line; a later write must not crash the sidecar.
  process.stdout.on("error", () => {});
  const log = createLogger();
  let config: SidecarConfig;
  try {
    config = loadConfig();
  } catch (error) {
    log.fatal({ reason: error instanceof ConfigError ? error.message : String(error) }, "sidecar.config_invalid");
    process.exit(2);
  }
  await mkdir(config.workspace, { recursive: true });
  let sandbox: Sandbox | undefined;
  try {
    sandbox = await sandboxFor(config, log);
  } catch (error) {
    log.fatal({ err: error }, "sidecar.sandbox_failed");
    process.exit(1);
  }
  const executor = createLocalExecutor(config.workspace, {
    launcher: sandbox?.context.box.commandLauncher,
    env: config.agentBox?.env,
  });
  const sidecar = createSidecarServer({
    workspace: config.workspace,
    token: config.token,
    logger: log,
    executor,
    sandbox: sandbox?.context,
  });
  listen(sidecar, config, log);

  const stop = (signal: NodeJS.Signals) => {
    log.info({ signal }, "sidecar.stopping");
    setTimeout(() => process.exit(0), SHUTDOWN_DEADLINE_MS).unref();
    void sidecar.shutdown().then(() => {
      sandbox?.close();
      log.info("sidecar.stopped");
    });
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

void main();
