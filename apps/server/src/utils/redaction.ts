/**
 * Replaces secret values in output with `[secret:NAME]` before the output is
 * stored, streamed or logged.
 *
 * A Redactor is streaming-safe: output arrives in pieces split anywhere, so a
 * secret may straddle two pieces. `push` therefore holds back the last
 * (longest secret − 1) characters until it knows they do not start a secret;
 * `flush` releases them at the end of the stream. One Redactor per stream.
 *
 * Invariants:
 * - No complete secret value ever leaves `push` or `flush`, and no prefix of
 *   one is released before the text after it shows it is not that secret.
 * - Where secrets overlap, the longest one starting at the earliest position
 *   wins (a secret that extends another is never half replaced).
 * - Text without secrets comes out unchanged, only delayed by the hold-back.
 */

export interface NamedSecret {
  name: string;
  value: string;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export class Redactor {
  private readonly pattern: RegExp | null;
  private readonly names = new Map<string, string>();
  /** Characters a secret can extend past the point where its match begins, minus one. */
  private readonly holdBack: number;
  private pending = "";

  constructor(secrets: readonly NamedSecret[]) {
    // Longest first: at one position the regex takes the first alternative that matches.
    const usable = secrets.filter((s) => s.value.length > 0).sort((a, b) => b.value.length - a.value.length);
    for (const secret of usable) if (!this.names.has(secret.value)) this.names.set(secret.value, secret.name);
    this.pattern = usable.length > 0 ? new RegExp(usable.map((s) => escapeRegExp(s.value)).join("|"), "g") : null;
    this.holdBack = usable.length > 0 ? usable[0]!.value.length - 1 : 0;
  }

  /** Whether there is anything to redact at all. */
  get active(): boolean {
    return this.pattern !== null;
  }

  /** Takes the next piece of the stream; returns what can be released now, redacted. */
  push(chunk: string): string {
    if (!this.pattern) return chunk;
    const text = this.pending + chunk;
    // A match starting before `decided` is final: every secret that could start there fits in `text`.
    const decided = Math.max(0, text.length - this.holdBack);
    let out = "";
    let cursor = 0;
    this.pattern.lastIndex = 0;
    for (let match = this.pattern.exec(text); match; match = this.pattern.exec(text)) {
      if (match.index >= decided) break;
      out += text.slice(cursor, match.index) + this.placeholder(match[0]);
      cursor = match.index + match[0].length;
    }
    const keepFrom = Math.max(cursor, decided);
    out += text.slice(cursor, keepFrom);
    this.pending = text.slice(keepFrom);
    return out;
  }

  /** Releases what is held back, redacted; the stream is over (the redactor can start a new one). */
  flush(): string {
    const rest = this.pending;
    this.pending = "";
    return this.redact(rest);
  }

  /** Redacts a complete text (not a stream piece). */
  redact(text: string): string {
    if (!this.pattern) return text;
    return text.replace(this.pattern, (value) => this.placeholder(value));
  }

  /** Redacts every string inside a JSON-like value (tool inputs and results). */
  redactDeep<T>(value: T): T {
    if (!this.pattern) return value;
    if (typeof value === "string") return this.redact(value) as T;
    if (Array.isArray(value)) return value.map((item) => this.redactDeep(item)) as T;
    if (value && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.redactDeep(v)])) as T;
    }
    return value;
  }

  private placeholder(value: string): string {
    return `[secret:${this.names.get(value) ?? "?"}]`;
  }
}

/** A redactor for streams that may contain none of these secrets. */
export const NO_SECRETS: readonly NamedSecret[] = [];
