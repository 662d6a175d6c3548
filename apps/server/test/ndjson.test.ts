/** The line splitter that reads the agent CLIs' JSON-lines output (ndjson.ts). */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LineSplitter } from "../src/agent/ndjson";

describe("the line splitter", () => {
  it("joins a line split across chunks and splits chunks holding several lines", () => {
    const lines = new LineSplitter();
    expect(lines.push('{"a":')).toEqual([]);
    expect(lines.push('1}\n{"b":2}\n{"c"')).toEqual(['{"a":1}', '{"b":2}']);
    expect(lines.push(":3}\r\n")).toEqual(['{"c":3}']);
    expect(lines.end()).toEqual([]);
  });

  it("returns a last line without a terminator at the end", () => {
    const lines = new LineSplitter();
    expect(lines.push("one\ntwo")).toEqual(["one"]);
    expect(lines.end()).toEqual(["two"]);
  });

  it("cuts a line longer than its limit instead of buffering it", () => {
    const lines = new LineSplitter(4);
    expect(lines.push("abcdefghij")).toEqual(["abcd", "efgh"]);
    expect(lines.push("\n")).toEqual(["ij"]);
  });

  it("gives the same lines however the text is cut into chunks (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: fc.constantFrom("a", "b", "\n", "{", "é") })), (chunks) => {
        const lines = new LineSplitter();
        const got = [...chunks.flatMap((chunk) => lines.push(chunk)), ...lines.end()];
        const whole = chunks.join("");
        const expected = whole.split("\n");
        if (expected.at(-1) === "") expected.pop();
        expect(got).toEqual(expected);
      }),
    );
  });
});
