/**
 * Bearer-token check for every sidecar request.
 *
 * Invariant: the comparison takes the same time whatever the presented token
 * is (tokenMatches hashes both sides before a timing-safe comparison).
 */
import type { IncomingHttpHeaders } from "node:http";
import { tokenMatches } from "@repo/workspace";

export function createTokenCheck(token: string): (headers: IncomingHttpHeaders) => boolean {
  return (headers) => {
    const header = headers.authorization ?? "";
    const match = /^Bearer (.+)$/i.exec(header);
    // Always compare, even without a match, so a missing header costs the same as a wrong one.
    return tokenMatches(match?.[1] ?? "", token) && match !== null;
  };
}
