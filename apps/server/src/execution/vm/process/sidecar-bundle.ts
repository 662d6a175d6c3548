/**
 * Where the built sidecar lives. The sidecar is its own app; the server finds
 * its bundle through the `@repo/sidecar/bundle` package export (or the
 * SIDECAR_BUNDLE setting), never through the sidecar's source.
 *
 * `npm start` builds the bundle before the server starts (`npm run build:sidecar`).
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { WorkspaceError } from "../../../errors";

const require = createRequire(import.meta.url);

/** Absolute path of the sidecar bundle; `configured` (SIDECAR_BUNDLE) wins over the package export. */
export function locateSidecarBundle(configured?: string): string {
  let path: string | null = configured ? resolve(configured) : null;
  if (!path) {
    try {
      path = require.resolve("@repo/sidecar/bundle");
    } catch {
      path = null;
    }
  }
  if (!path || !existsSync(path)) {
    throw new WorkspaceError(
      `the sidecar bundle is missing${path ? ` at ${path}` : ""}: run \`npm run build:sidecar\` (or set SIDECAR_BUNDLE)`,
      null,
      false,
    );
  }
  return path;
}
