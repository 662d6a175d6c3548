/**
 * Bearer-token check for every sidecar request.
 *
 * Invariant: the comparison takes the same time whatever the presented token
 * is: both sides are hashed to 32 bytes first, then compared with
 * timingSafeEqual, so neither length nor content leaks through timing.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

export function createTokenCheck(token: string): (headers: IncomingHttpHeaders) => boolean {
  const expected = digest(token);
  return (headers) => {
    const header = headers.authorization ?? "";
    const match = /^Bearer (.+)$/i.exec(header);
    const presented = digest(match?.[1] ?? "");
    // Always compare, even without a match, so a missing header costs the same as a wrong one.
    return timingSafeEqual(expected, presented) && match !== null;
  };
}
