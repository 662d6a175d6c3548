/**
 * Bearer-token comparison shared by the server (API_TOKEN) and the sidecar
 * (the per-VM token). Both sides are hashed to 32 bytes first and compared
 * with timingSafeEqual, so neither the length nor the content of the
 * expected token leaks through timing.
 */
import { createHash, timingSafeEqual } from "node:crypto";

const digest = (value: string) => createHash("sha256").update(value, "utf8").digest();

export function tokenMatches(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}
