import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Redactor } from "../src/utils/redaction";

const SECRETS = [
  { name: "TOKEN", value: "tok-12345" },
  { name: "LONG", value: "tok-12345-and-more" },
  { name: "PASSWORD", value: "hunter2!" },
];

/** Feeds `pieces` through one redactor, as a stream. */
function streamed(redactor: Redactor, pieces: string[]): string {
  return pieces.map((piece) => redactor.push(piece)).join("") + redactor.flush();
}

describe("Redactor", () => {
  it("replaces every occurrence of a secret value with its name", () => {
    const redactor = new Redactor(SECRETS);
    expect(redactor.redact("a tok-12345 b hunter2! c tok-12345")).toBe(
      "a [secret:TOKEN] b [secret:PASSWORD] c [secret:TOKEN]",
    );
  });

  it("prefers the longest secret starting at the same place", () => {
    const redactor = new Redactor(SECRETS);
    expect(redactor.redact("x tok-12345-and-more y")).toBe("x [secret:LONG] y");
  });

  it("redacts a secret split across pieces, one character at a time", () => {
    const redactor = new Redactor(SECRETS);
    const text = "before tok-12345-and-more after hunter2!";
    const out = streamed(redactor, [...text]);
    expect(out).toBe("before [secret:LONG] after [secret:PASSWORD]");
  });

  it("never releases a complete secret or a prefix that turns into one", () => {
    const redactor = new Redactor([{ name: "K", value: "abcdef" }]);
    const released = [redactor.push("xx abc"), redactor.push("de"), redactor.push("f yy")];
    for (const piece of released) expect(piece).not.toMatch(/abc/);
    expect(released.join("") + redactor.flush()).toBe("xx [secret:K] yy");
  });

  it("holds back no more than the longest secret less one character, and releases it at the end", () => {
    const redactor = new Redactor([{ name: "K", value: "abcdef" }]);
    expect(redactor.push("abc")).toBe("");
    expect(redactor.push("xyz")).toBe("a");
    expect(redactor.push("0123456789")).toBe("bcxyz01234");
    expect(redactor.flush()).toBe("56789");
  });

  it("passes text through unchanged when there are no secrets", () => {
    const redactor = new Redactor([]);
    expect(redactor.active).toBe(false);
    expect(redactor.push("tok-12345")).toBe("tok-12345");
    expect(redactor.flush()).toBe("");
  });

  it("redacts strings inside tool inputs and results", () => {
    const redactor = new Redactor(SECRETS);
    expect(redactor.redactDeep({ command: "echo tok-12345", args: ["hunter2!", 3], nested: { ok: true } })).toEqual({
      command: "echo [secret:TOKEN]",
      args: ["[secret:PASSWORD]", 3],
      nested: { ok: true },
    });
  });

  it("streams to the same result as redacting the whole text, however the text is split, and leaves no value", () => {
    const unit = fc.constantFrom("a", "b", "-", "1", " ", "\n");
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit, minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 3 }),
        fc.array(fc.oneof(fc.string({ unit, maxLength: 8 }), fc.nat(2)), { maxLength: 12 }),
        fc.array(fc.nat(60), { maxLength: 8 }),
        (values, parts, cuts) => {
          // Names share no character with the values, so a placeholder cannot spell one.
          const secrets = values.map((value, i) => ({ name: "XYZ"[i]!, value }));
          const text = parts.map((p) => (typeof p === "number" ? values[p % values.length]! : p)).join("");
          const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
          const pieces = [...points, text.length].map((end, i, ends) => text.slice(i === 0 ? 0 : ends[i - 1], end));
          const whole = new Redactor(secrets).redact(text);
          expect(streamed(new Redactor(secrets), pieces)).toBe(whole);
          for (const { value } of secrets) expect(whole).not.toContain(value);
        },
      ),
      { numRuns: 300 },
    );
  });
});
