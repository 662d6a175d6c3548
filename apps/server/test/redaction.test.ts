/**
 * The secret redactor: whole texts, JSON values, and streams cut into chunks
 * anywhere (property-based with fast-check).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SecretRedactor } from "../src/utils/redaction";

/** Feeds `chunks` through a fresh stream of `redactor` and joins what comes out. */
function streamed(redactor: SecretRedactor, chunks: string[]): string {
  const stream = redactor.stream();
  return chunks.map((chunk) => stream.push(chunk)).join("") + stream.end();
}

/** Cuts `text` at the given positions (any order, duplicates allowed). */
function cut(text: string, positions: number[]): string[] {
  const points = [...new Set(positions.map((p) => p % (text.length + 1)))].sort((a, b) => a - b);
  const chunks: string[] = [];
  let from = 0;
  for (const point of points) {
    chunks.push(text.slice(from, point));
    from = point;
  }
  chunks.push(text.slice(from));
  return chunks;
}

describe("secret redaction", () => {
  const redactor = new SecretRedactor({ OPENAI_API_KEY: "sk-live-123456", ANTHROPIC_API_KEY: "sk-ant-987" });

  it("replaces every occurrence of every secret with its name", () => {
    expect(redactor.redact("key sk-live-123456 and sk-ant-987, again sk-live-123456.")).toBe(
      "key [secret:OPENAI_API_KEY] and [secret:ANTHROPIC_API_KEY], again [secret:OPENAI_API_KEY].",
    );
  });

  it("leaves text without secrets unchanged, including near misses", () => {
    expect(redactor.redact("sk-live-12345 sk-ant-98 sk-")).toBe("sk-live-12345 sk-ant-98 sk-");
  });

  it("prefers the longer secret where two start at the same place", () => {
    const nested = new SecretRedactor({ SHORT: "abcdefgh", LONG: "abcdefghijkl" });
    expect(nested.redact("abcdefghijkl abcdefghxyz")).toBe("[secret:LONG] [secret:SHORT]xyz");
  });

  it("ignores empty, missing and too short values", () => {
    const none = new SecretRedactor({ EMPTY: "", MISSING: undefined, SHORT: "k", SEVEN: "1234567" });
    expect(none.empty).toBe(true);
    expect(none.redact("anything")).toBe("anything");
    expect(streamed(none, ["a", "b"])).toBe("ab");
  });

  it("redacts strings anywhere inside a JSON value, keys included", () => {
    const value = { command: "echo sk-ant-987", nested: [{ "sk-live-123456": 1 }, 2, null, true] };
    expect(redactor.redactValue(value)).toEqual({
      command: "echo [secret:ANTHROPIC_API_KEY]",
      nested: [{ "[secret:OPENAI_API_KEY]": 1 }, 2, null, true],
    });
  });

  it("catches a secret split across chunks", () => {
    expect(streamed(redactor, ["the key is sk-li", "ve-12", "3456 ok"])).toBe("the key is [secret:OPENAI_API_KEY] ok");
  });

  it("catches a secret sent one character at a time", () => {
    expect(streamed(redactor, [..."a sk-ant-987 b"])).toBe("a [secret:ANTHROPIC_API_KEY] b");
  });

  it("holds back no more than the longest secret's length minus one", () => {
    const stream = redactor.stream();
    const longest = "sk-live-123456".length;
    expect(stream.push("plain text then sk-live-12345")).toBe("plain text then ");
    expect(stream.push("x")).toBe("sk-live-12345x");
    const released = stream.push(`${"y".repeat(40)}sk-live-1234`);
    expect(released).toBe("y".repeat(40));
    expect("sk-live-1234".length).toBeLessThanOrEqual(longest - 1);
    expect(stream.end()).toBe("sk-live-1234");
  });

  it("releases text at once when it cannot start a secret", () => {
    const stream = redactor.stream();
    expect(stream.push("hello world")).toBe("hello world");
  });

  it("streams exactly what redacting the whole text gives, however it is cut (property)", () => {
    // A two-letter alphabet makes secrets share prefixes and overlap, and texts hold whole secrets and their beginnings.
    const alphabet = fc.constantFrom(..."ab");
    const secretValue = fc.string({ unit: alphabet, minLength: 8, maxLength: 11 });
    fc.assert(
      fc.property(
        fc.array(secretValue, { minLength: 1, maxLength: 4 }),
        fc.array(fc.oneof(fc.string({ unit: alphabet, maxLength: 6 }), fc.tuple(fc.nat(), fc.nat())), {
          maxLength: 12,
        }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (values, parts, positions) => {
          const text = parts
            .map((part) => {
              if (typeof part === "string") return part;
              const secret = values[part[0] % values.length]!;
              return secret.slice(0, 1 + (part[1] % secret.length));
            })
            .join("");
          const secrets = new SecretRedactor(values.map((value, i) => ({ name: `S${i}`, value })));
          expect(streamed(secrets, cut(text, positions))).toBe(secrets.redact(text));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("leaves no secret in the output and holds back less than the longest secret (property)", () => {
    // Secrets are drawn from characters that the marker `[secret:Sn]` never contains.
    const alphabet = fc.constantFrom(..."xyz0123456789-_");
    const secretValue = fc.string({ unit: alphabet, minLength: 8, maxLength: 16 });
    fc.assert(
      fc.property(
        fc.array(secretValue, { minLength: 1, maxLength: 3 }),
        fc.array(fc.oneof(fc.string({ unit: alphabet, maxLength: 10 }), fc.nat({ max: 2 })), { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (values, parts, positions) => {
          // The text mixes filler with whole secrets (a number picks one).
          const text = parts.map((part) => (typeof part === "number" ? values[part % values.length] : part)).join("");
          const secrets = new SecretRedactor(values.map((value, i) => ({ name: `S${i}`, value })));
          const stream = secrets.stream();
          const longest = Math.max(...values.map((v) => v.length));
          let seen = "";
          let out = "";
          for (const chunk of cut(text, positions)) {
            seen += chunk;
            out += stream.push(chunk);
            // What came out so far is the redaction of all that was seen except a tail shorter than the longest secret.
            const heldBackLengths = [];
            for (let held = 0; held < longest && held <= seen.length; held += 1) {
              if (secrets.redact(seen.slice(0, seen.length - held)) === out) heldBackLengths.push(held);
            }
            expect(heldBackLengths.length).toBeGreaterThan(0);
          }
          out += stream.end();
          for (const value of values) expect(out).not.toContain(value);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
