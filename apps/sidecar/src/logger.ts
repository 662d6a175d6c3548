/**
 * Structured JSON logs on stderr (stdout carries only the "listening" line
 * the provider waits for). Authorization headers and tokens are redacted even
 * if a caller passes them by mistake.
 */
import pino from "pino";

export type Logger = pino.Logger;

export function createLogger(level: string = process.env.SIDECAR_LOG_LEVEL ?? "info"): Logger {
  return pino(
    {
      base: { service: "sidecar" },
      level,
      redact: {
        paths: ["token", "authorization", "headers.authorization", "req.headers.authorization"],
        censor: "[redacted]",
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}
