/**
 * Temporary directories of the tests: every one made with tempDir() is
 * removed after its test file (clean-temp-dirs.ts, a setup file), once the
 * file's own afterAll hooks have closed its servers — with anything still
 * mounted under it (a sandbox's disk) detached first.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const made: string[] = [];

export function tempDir(prefix = "umbra-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Detaches what is still mounted under `dir` (a sandbox's disk whose server was killed), deepest first. */
export function detachMountsUnder(dir: string): void {
  let mounts: string[];
  try {
    mounts = readFileSync("/proc/self/mounts", "utf8")
      .split("\n")
      .map((line) => line.split(" ")[1]?.replace(/\\040/g, " ") ?? "")
      .filter((target) => target === dir || target.startsWith(`${dir}/`));
  } catch {
    return;
  }
  for (const target of mounts.sort((a, b) => b.length - a.length)) {
    spawnSync("umount", ["-l", target], { stdio: "ignore" });
  }
}

/** Removes every directory tempDir() made in this test file. */
export function removeTempDirs(): void {
  for (const dir of made.splice(0)) {
    detachMountsUnder(dir);
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (error) {
      console.error(`could not remove ${dir}: ${(error as Error).message}`);
    }
  }
}
