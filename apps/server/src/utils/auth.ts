/** Constant-time token comparison: both sides are hashed first so lengths never leak. */
import { createHash, timingSafeEqual } from "node:crypto";

const digest = (value: string) => createHash("sha256").update(value).digest();

export function tokenMatches(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}
