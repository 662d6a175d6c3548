/** Token handling: constant-time comparison (shared with the sidecar) and the hash stored for per-VM tokens. */
import { createHash } from "node:crypto";

export { tokenMatches } from "@repo/workspace";

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}
