/**
 * Text as the database can hold it. Postgres `text` and `jsonb` refuse the
 * NUL character, and `jsonb` refuses lone UTF-16 surrogates, so an agent
 * that prints either would make every later write of its message fail. Both
 * become U+FFFD (the replacement character, what a decoder makes of invalid
 * bytes); every other character, control characters included, is stored as
 * it came.
 *
 * Sizes are UTF-8 bytes, the unit Postgres' `octet_length` counts, so the
 * server and the database agree on how long a stored text is.
 */

const LONE_SURROGATE = /\p{Cs}/u;
const LONE_SURROGATES = /\p{Cs}/gu;

export function storableText(text: string): string {
  const withoutNul = text.includes("\0") ? text.replaceAll("\0", "\uFFFD") : text;
  return LONE_SURROGATE.test(withoutNul) ? withoutNul.replace(LONE_SURROGATES, "\uFFFD") : withoutNul;
}

/** `value` with storableText applied to every string in it, keys included. */
export function storableJson<T>(value: T): T {
  if (typeof value === "string") return storableText(value) as T;
  if (Array.isArray(value)) return value.map((item) => storableJson(item)) as T;
  if (value && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [storableText(key), storableJson(item)])) as T;
  }
  return value;
}

export function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/**
 * Splits `text` into the longest prefix of at most `maxBytes` UTF-8 bytes
 * that ends on a character boundary, and the rest.
 */
export function splitUtf8(text: string, maxBytes: number): [head: string, rest: string] {
  if (maxBytes <= 0) return ["", text];
  // Each UTF-16 unit is at most 3 bytes, so a prefix this short always fits.
  if (text.length * 3 <= maxBytes) return [text, ""];
  // Every unit is at least one byte: the head lies within the first maxBytes units, so only those
  // are encoded (a long text is split many times; encoding all of it each time would be quadratic).
  let window = text.slice(0, maxBytes);
  const last = window.charCodeAt(window.length - 1);
  if (window.length < text.length && last >= 0xd800 && last <= 0xdbff) window = window.slice(0, -1);
  if (Buffer.byteLength(window, "utf8") <= maxBytes) return [window, text.slice(window.length)];
  const bytes = Buffer.from(window, "utf8");
  let end = maxBytes;
  // Step back over continuation bytes (10xxxxxx) to the start of the character that does not fit.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  const head = bytes.subarray(0, end).toString("utf8");
  return [head, text.slice(head.length)];
}
