/**
 * Encryption at rest for what Umbra keeps secret in its database (the
 * secrets store, per-sandbox tokens): AES-256-GCM with one server key.
 *
 * The key comes from SECRETS_KEY (32 bytes, base64 or hex) or, when that is
 * unset, from a key file created once under DATA_DIR with mode 0600. Servers
 * that share a database must share the key: set SECRETS_KEY on all of them
 * (or share DATA_DIR).
 *
 * Invariants:
 * - A sealed value is `v1.<iv>.<tag>.<ciphertext>` (base64url); a fresh random
 *   96-bit IV per seal.
 * - Every value is bound to a context string (additional authenticated data),
 *   e.g. `vm-token:<session id>`: a ciphertext copied to another row does not
 *   open there. A wrong key, a wrong context or a changed byte fails to open
 *   with SecretBoxError, never with garbage.
 * - The key never leaves this module and is never logged.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";

const KEY_BYTES = 32;
const IV_BYTES = 12;
const VERSION = "v1";

export class SecretBoxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SecretBoxError";
  }
}

/** Parses SECRETS_KEY: 32 bytes as base64/base64url (43–44 chars) or hex (64 chars). */
export function parseSecretsKey(text: string): Buffer {
  const trimmed = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(trimmed) ? Buffer.from(trimmed, "hex") : Buffer.from(trimmed, "base64");
  if (key.length !== KEY_BYTES) {
    throw new SecretBoxError(`must be ${KEY_BYTES} bytes, as base64 or hex (got ${key.length} bytes)`);
  }
  return key;
}

export class SecretBox {
  private constructor(private readonly key: Buffer) {}

  /** The box for SECRETS_KEY when given, else for the key file under `dataDir` (created on first use). */
  static async load(options: { secretsKey?: string; dataDir: string }): Promise<SecretBox> {
    if (options.secretsKey) return new SecretBox(parseSecretsKey(options.secretsKey));
    const file = join(options.dataDir, "secrets.key");
    try {
      return new SecretBox(parseSecretsKey(await readFile(file, "utf8")));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    await mkdir(dirname(file), { recursive: true });
    const key = randomBytes(KEY_BYTES);
    // "wx": two servers starting at once on one DATA_DIR must not both write a key.
    await writeFile(file, `${key.toString("base64")}\n`, { mode: 0o600, flag: "wx" }).catch(async (error) => {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    });
    await chmod(file, 0o600);
    return new SecretBox(parseSecretsKey(await readFile(file, "utf8")));
  }

  /** A box with this exact key (tests, tools). */
  static withKey(key: Buffer): SecretBox {
    if (key.length !== KEY_BYTES) throw new SecretBoxError(`a key is ${KEY_BYTES} bytes`);
    return new SecretBox(Buffer.from(key));
  }

  seal(plaintext: string, context: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(context, "utf8"));
    const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    const parts = [iv, cipher.getAuthTag(), ciphertext].map((part) => part.toString("base64url"));
    return [VERSION, ...parts].join(".");
  }

  open(sealed: string, context: string): string {
    const [version, iv, tag, ciphertext, ...rest] = sealed.split(".");
    if (version !== VERSION || iv === undefined || tag === undefined || ciphertext === undefined || rest.length > 0) {
      throw new SecretBoxError("not a sealed value");
    }
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(iv, "base64url"));
      decipher.setAAD(Buffer.from(context, "utf8"));
      decipher.setAuthTag(Buffer.from(tag, "base64url"));
      return Buffer.concat([decipher.update(Buffer.from(ciphertext, "base64url")), decipher.final()]).toString("utf8");
    } catch {
      throw new SecretBoxError("the value does not open with this key and context");
    }
  }
}
