/**
 * The server's own logger (its redaction included) whose every line (at every level) is kept in memory as
 * text and parsed JSON, so a test can look for events and for what must
 * never be written (a token).
 */
import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../apps/server/src/logger";

export interface CapturedLogs {
  logger: Logger;
  /** Every line written, as written. */
  lines: string[];
  /** The lines whose `msg` is `event`. */
  events(event: string): Record<string, unknown>[];
}

export function captureLogs(): CapturedLogs {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
      done();
    },
  });
  const logger = createLogger("trace", sink);
  return {
    logger,
    lines,
    events: (event) =>
      lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.msg === event),
  };
}
