/**
 * The full output of a task's agent, one plain-text file per task under
 * `<DATA_DIR>/logs/<taskId>.log`. Messages keep at most a capped part of a
 * long output; this file keeps all of it, up to its own cap, with a header
 * line before each message.
 *
 * Invariants:
 * - A file never grows past `maxBytes` plus one short notice per turn that
 *   says how many bytes did not fit.
 * - Memory stays bounded: `write` reports when the file falls behind, and the
 *   writer (the turn's output sink) pauses its source until it catches up.
 * - A failing disk never fails the turn: the error is logged once and the
 *   file is left as it is for the rest of the turn.
 */
import { createReadStream, createWriteStream, mkdirSync, statSync, type WriteStream } from "node:fs";
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { Logger } from "../logger";
import type { Clock } from "../utils/clock";
import { splitUtf8, utf8Bytes } from "../utils/storable-text";

/** Bytes buffered for the file before `write` asks its caller to wait. */
const HIGH_WATER_BYTES = 1024 * 1024;

export class OutputLogs {
  /**
   * @param dir where the files live, e.g. `<DATA_DIR>/logs`
   * @param maxBytes the cap of one task's file, in bytes
   */
  constructor(
    readonly dir: string,
    readonly maxBytes: number,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  path(taskId: string): string {
    return join(this.dir, `${taskId}.log`);
  }

  /** Opens the task's file for appending, for one turn (synchronously: a turn's sink is opened synchronously). */
  open(taskId: string): TaskOutputLog {
    mkdirSync(this.dir, { recursive: true });
    const path = this.path(taskId);
    const size = statSync(path, { throwIfNoEntry: false })?.size ?? 0;
    return new TaskOutputLog(path, size, this.maxBytes, this.clock, this.log.child({ taskId }));
  }

  /** The task's file as a stream, or null when it has none. */
  async read(taskId: string): Promise<{ stream: Readable; size: number } | null> {
    const path = this.path(taskId);
    const size = await stat(path).then(
      (s) => s.size,
      () => null,
    );
    if (size === null) return null;
    // Only what is there now: a turn may still be appending.
    return { stream: size === 0 ? Readable.from([]) : createReadStream(path, { end: size - 1 }), size };
  }

  async remove(taskId: string): Promise<void> {
    await rm(this.path(taskId), { force: true });
  }
}

/** One turn's appender to a task's file. */
export class TaskOutputLog {
  private file: WriteStream | null = null;
  private omittedBytes = 0;
  private failed = false;

  constructor(
    private readonly path: string,
    private size: number,
    private readonly maxBytes: number,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Writes a line that introduces the next message. */
  heading(text: string): boolean {
    return this.write(`\n[${this.clock.now().toISOString()}] ${text}\n`);
  }

  /**
   * Appends `text` (what fits under the cap). Returns false when the file is
   * behind: call `drained()` before writing much more.
   */
  write(text: string): boolean {
    if (!text) return true;
    if (this.failed) return true;
    const [fits, rest] = splitUtf8(text, this.maxBytes - this.size);
    if (rest) this.omittedBytes += utf8Bytes(rest);
    if (!fits) return true;
    this.size += utf8Bytes(fits);
    return this.stream().write(fits);
  }

  /** Resolves when the buffered output has reached the file. */
  drained(): Promise<void> {
    const file = this.file;
    if (!file?.writableNeedDrain || this.failed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        file.off("drain", done);
        file.off("close", done);
        resolve();
      };
      file.on("drain", done);
      file.on("close", done);
    });
  }

  /** Notes what the cap left out, then closes the file. */
  async close(): Promise<void> {
    if (this.omittedBytes > 0 && !this.failed) {
      this.stream().write(
        `\n… ${this.omittedBytes} bytes omitted: this log reached its limit of ${this.maxBytes} bytes\n`,
      );
    }
    const file = this.file;
    if (!file) return;
    await new Promise<void>((resolve) => {
      if (file.closed) resolve();
      else file.end(() => resolve());
      file.once("error", () => resolve());
    });
  }

  private stream(): WriteStream {
    if (!this.file) {
      const file = createWriteStream(this.path, { flags: "a", highWaterMark: HIGH_WATER_BYTES });
      file.on("error", (error) => {
        if (this.failed) return;
        this.failed = true;
        this.log.warn({ err: error, path: this.path }, "output_log.write.failed");
      });
      this.file = file;
    }
    return this.file;
  }
}
