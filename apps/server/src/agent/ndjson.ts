/**
 * Splits a stream of text chunks into lines, for the JSON-lines event streams
 * of the agent CLIs. Chunks arrive as the pipe delivers them, so one line may
 * span several chunks and one chunk may hold several lines.
 *
 * Invariants: every character pushed comes out exactly once, in order, in a
 * line without its terminator (`\n`, or `\r\n`); a trailing line without a
 * terminator is only returned by `end()`. A line longer than `maxLineLength`
 * is cut there rather than buffered without bound.
 */

/** Longest line kept whole, in characters. Default 16 MiB: a tool result can be large. */
export const DEFAULT_MAX_LINE_LENGTH = 16 * 1024 * 1024;

export class LineSplitter {
  private pending = "";

  constructor(private readonly maxLineLength = DEFAULT_MAX_LINE_LENGTH) {}

  /** The lines completed by this chunk. */
  push(chunk: string): string[] {
    const text = this.pending + chunk;
    const lines: string[] = [];
    let start = 0;
    for (let end = text.indexOf("\n", start); end !== -1; end = text.indexOf("\n", start)) {
      lines.push(stripCarriageReturn(text.slice(start, end)));
      start = end + 1;
    }
    this.pending = text.slice(start);
    while (this.pending.length > this.maxLineLength) {
      lines.push(this.pending.slice(0, this.maxLineLength));
      this.pending = this.pending.slice(this.maxLineLength);
    }
    return lines;
  }

  /** The last line when the stream ended without a terminator. */
  end(): string[] {
    const rest = stripCarriageReturn(this.pending);
    this.pending = "";
    return rest ? [rest] : [];
  }
}

function stripCarriageReturn(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}
