/**
 * Runs once before the test files: builds the sidecar bundle when one of its
 * inputs changed, so that every server a test starts in remote mode (in
 * process or as a child process) finds it through the package export.
 */
import { ensureSidecarBundle } from "../../apps/sidecar/build";

export default async function setup(): Promise<void> {
  await ensureSidecarBundle();
}
