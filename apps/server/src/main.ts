/**
 * `npm start`: reads the configuration, starts the server, and shuts it down
 * gracefully on SIGINT/SIGTERM (running turns end STOPPED with a reason).
 */
import { createUmbraServer } from "./app";
import { ConfigError, loadConfig } from "./config";
import { createLogger } from "./logger";

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`umbra: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const log = createLogger(config.logLevel);
  const server = await createUmbraServer({ config, logger: log });
  await server.listen();
  let signals = 0;
  const shutdown = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, "server.forced_exit");
      process.exit(1);
    }
    server.close(`server received ${signal}`).then(
      () => process.exit(0),
      (error) => {
        log.error({ err: error }, "server.close.failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}

main().catch((error) => {
  process.stderr.write(`umbra: failed to start: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
