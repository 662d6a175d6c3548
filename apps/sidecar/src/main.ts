/**
 * Sidecar entry point: reads the configuration, serves the workspace, and
 * announces itself with exactly one JSON line on stdout,
 * `{"event":"listening","port":N,"host":"..."}`, which is how the process
 * provider learns the ephemeral port. Everything else goes to stderr as JSON
 * logs. Extra command-line arguments are ignored; the process provider passes
 * one to make the sandbox recognisable in the process table.
 *
 * SIGTERM/SIGINT stop running commands (their whole process groups) and close
 * the server; the process then exits once nothing is pending.
 */
import { mkdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { ConfigError, loadConfig } from "./config";
import { createLogger } from "./logger";
import { createSidecarServer } from "./server";

/** Upper bound on a graceful stop before the process exits regardless, ms. */
const SHUTDOWN_DEADLINE_MS = 5000;

async function main() {
  // The provider stops reading stdout after the listening line; a later write must not crash the sidecar.
  process.stdout.on("error", () => {});
  const log = createLogger();
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (error) {
    log.fatal({ reason: error instanceof ConfigError ? error.message : String(error) }, "sidecar.config_invalid");
    process.exit(2);
  }
  await mkdir(config.workspace, { recursive: true });
  const sidecar = createSidecarServer({
    workspace: config.workspace,
    token: config.token,
    agentHome: config.agentHome,
    logger: log,
  });

  sidecar.server.listen(config.port, config.host, () => {
    const { port } = sidecar.server.address() as AddressInfo;
    process.stdout.write(`${JSON.stringify({ event: "listening", port, host: config.host })}\n`);
    log.info({ port, host: config.host, workspace: config.workspace }, "sidecar.listening");
  });
  sidecar.server.on("error", (error) => {
    log.fatal({ err: error }, "sidecar.listen_failed");
    process.exit(1);
  });

  const stop = (signal: NodeJS.Signals) => {
    log.info({ signal }, "sidecar.stopping");
    setTimeout(() => process.exit(0), SHUTDOWN_DEADLINE_MS).unref();
    void sidecar.shutdown().then(() => log.info("sidecar.stopped"));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

void main();
