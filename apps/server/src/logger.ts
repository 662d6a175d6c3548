/**
 * The server's pino logger. Child loggers bind ids (`log.child({ taskId })`);
 * messages are stable event names with details in fields. Secrets are redacted.
 */
import { pino } from "pino";

export type Logger = pino.Logger;

/** The server's logger at `level`, writing to stdout or to `destination`. */
export function createLogger(level = "info", destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: "umbra-server" },
    redact: {
      paths: ["token", "*.token", "apiKey", "*.apiKey", "req.headers.authorization", "headers.authorization"],
      censor: "[redacted]",
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
