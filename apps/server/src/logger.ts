/**
 * The server's pino logger. Child loggers bind ids (`log.child({ taskId })`);
 * messages are stable event names with details in fields. Secrets are redacted:
 * token fields by name, and credentials embedded in URLs wherever they appear
 * in a line (an error message quoting a repository URL, say).
 */
import { pino } from "pino";
import { scrubCredentials } from "./security/credentials";

export type Logger = pino.Logger;

/** @param destination where lines go; default standard output */
export function createLogger(level = "info", destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: "umbra-server" },
    redact: {
      paths: ["token", "*.token", "apiKey", "*.apiKey", "req.headers.authorization", "headers.authorization"],
      censor: "[redacted]",
    },
    hooks: { streamWrite: scrubCredentials },
  };
  return destination ? pino(options, destination) : pino(options);
}
