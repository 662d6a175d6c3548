import { randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { tempDir } from "../../../test/support/git";
import { parseSecretsKey, SecretBox, SecretBoxError } from "../src/utils/secret-box";

describe("the secret box", () => {
  it("opens what it sealed, for any text, only with the same key and context", () => {
    const box = SecretBox.withKey(randomBytes(32));
    const other = SecretBox.withKey(randomBytes(32));
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), fc.string(), (plaintext, context) => {
        const sealed = box.seal(plaintext, context);
        expect(sealed).not.toContain(plaintext.length > 8 ? plaintext : "\u0000never");
        expect(box.open(sealed, context)).toBe(plaintext);
        expect(() => other.open(sealed, context)).toThrow(SecretBoxError);
        expect(() => box.open(sealed, `${context}x`)).toThrow(SecretBoxError);
      }),
      { numRuns: 100 },
    );
  });

  it("seals the same text differently each time and refuses a changed byte", () => {
    const box = SecretBox.withKey(randomBytes(32));
    const a = box.seal("token", "vm-token:1");
    expect(box.seal("token", "vm-token:1")).not.toBe(a);
    const parts = a.split(".");
    const tampered = Buffer.from(parts[3]!, "base64url");
    tampered[0] = tampered[0]! ^ 1;
    parts[3] = tampered.toString("base64url");
    expect(() => box.open(parts.join("."), "vm-token:1")).toThrow(SecretBoxError);
    expect(() => box.open("garbage", "vm-token:1")).toThrow(SecretBoxError);
  });

  it("creates one key file with mode 0600 under the data directory and reuses it", async () => {
    const dataDir = tempDir("umbra-secrets-");
    const [first, second] = await Promise.all([SecretBox.load({ dataDir }), SecretBox.load({ dataDir })]);
    const file = join(dataDir, "secrets.key");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const sealed = first.seal("value", "ctx");
    expect(second.open(sealed, "ctx")).toBe("value");
    expect((await SecretBox.load({ dataDir })).open(sealed, "ctx")).toBe("value");
    expect(readFileSync(file, "utf8")).not.toContain("value");
  });

  it("takes SECRETS_KEY as base64 or hex and refuses a key of the wrong size", async () => {
    const key = randomBytes(32);
    const fromBase64 = await SecretBox.load({ secretsKey: key.toString("base64"), dataDir: tempDir() });
    const fromHex = await SecretBox.load({ secretsKey: key.toString("hex"), dataDir: tempDir() });
    expect(fromHex.open(fromBase64.seal("x", "c"), "c")).toBe("x");
    expect(() => parseSecretsKey("c2hvcnQ=")).toThrow(/32 bytes/);
  });
});
