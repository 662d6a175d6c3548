/**
 * Replaces secret values (API keys and the like) in text with `[secret:NAME]`
 * before the text is stored, streamed or logged.
 *
 * Invariants:
 * - Every occurrence of every secret of at least MIN_SECRET_LENGTH characters
 *   is replaced. Shorter values are left alone: no credential is that short,
 *   and replacing every "k" of a text because a test key is "k" would garble
 *   it. Where two secrets could match at one position the longer wins;
 *   matching goes left to right.
 * - Streaming gives exactly what redacting the whole text at once gives,
 *   however the text is cut into chunks: a stream holds back the end of what
 *   it has seen only while that end could still grow into a secret, i.e. at
 *   most the longest secret's length - 1 characters, until the next chunk or
 *   `end()`.
 */

/** Shorter values are not treated as secrets (see above). */
export const MIN_SECRET_LENGTH = 8;

export interface Secret {
  /** Shown in place of the value, e.g. ANTHROPIC_API_KEY. */
  name: string;
  value: string;
}

export class SecretRedactor {
  /** The secrets long enough to redact, longest first, so the first match at a position is the longest. */
  private readonly secrets: Secret[];
  /** First characters of the secrets: positions starting with anything else are skipped at once. */
  private readonly firstChars: Set<string>;

  constructor(secrets: Secret[] | Record<string, string | undefined>) {
    const list = Array.isArray(secrets)
      ? secrets
      : Object.entries(secrets).map(([name, value]) => ({ name, value: value ?? "" }));
    this.secrets = list
      .filter((s) => s.value.length >= MIN_SECRET_LENGTH)
      .sort((a, b) => b.value.length - a.value.length);
    this.firstChars = new Set(this.secrets.map((s) => s.value[0]!));
  }

  /** True when there is nothing to redact. */
  get empty(): boolean {
    return this.secrets.length === 0;
  }

  /** The text with every secret replaced. */
  redact(text: string): string {
    if (this.empty) return text;
    const { output, held } = this.scan(text, false);
    return output + held;
  }

  /** Redacts every string inside a JSON-like value (objects, arrays), keys included. */
  redactValue<T>(value: T): T {
    if (this.empty) return value;
    return this.redactDeep(value) as T;
  }

  /** A redactor for one stream of chunks. */
  stream(): RedactingStream {
    return new RedactingStream(this);
  }

  /**
   * Redacts `text`. With `holdTail`, stops at the first position from which
   * the rest of the text is a proper prefix of a secret and returns that rest
   * as `held` instead of deciding it now.
   */
  scan(text: string, holdTail: boolean): { output: string; held: string } {
    let output = "";
    let copiedUpTo = 0;
    let i = 0;
    while (i < text.length) {
      if (!this.firstChars.has(text[i]!)) {
        i += 1;
        continue;
      }
      // Checked before matching: a longer secret may still be arriving where a shorter one matches now.
      if (holdTail && this.couldBecomeSecret(text, i)) {
        return { output: output + text.slice(copiedUpTo, i), held: text.slice(i) };
      }
      const match = this.secrets.find((s) => text.startsWith(s.value, i));
      if (match) {
        output += `${text.slice(copiedUpTo, i)}[secret:${match.name}]`;
        i += match.value.length;
        copiedUpTo = i;
        continue;
      }
      i += 1;
    }
    return { output: output + text.slice(copiedUpTo), held: "" };
  }

  /** True when text[from..] is a proper prefix of some secret (so more text could complete it). */
  private couldBecomeSecret(text: string, from: number): boolean {
    const rest = text.length - from;
    return this.secrets.some((s) => s.value.length > rest && s.value.startsWith(text.slice(from)));
  }

  private redactDeep(value: unknown): unknown {
    if (typeof value === "string") return this.redact(value);
    if (Array.isArray(value)) return value.map((item) => this.redactDeep(item));
    if (value && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [this.redact(k), this.redactDeep(v)]));
    }
    return value;
  }
}

/** Redacts one stream of text chunks; see SecretRedactor for what it guarantees. */
export class RedactingStream {
  private held = "";

  constructor(private readonly redactor: SecretRedactor) {}

  /** The redacted text that can be released now (possibly empty). */
  push(chunk: string): string {
    if (this.redactor.empty) return chunk;
    const { output, held } = this.redactor.scan(this.held + chunk, true);
    this.held = held;
    return output;
  }

  /** Releases what was held back; the stream can be reused afterwards. */
  end(): string {
    const rest = this.held;
    this.held = "";
    return rest ? this.redactor.redact(rest) : "";
  }
}
