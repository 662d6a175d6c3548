/**
 * Fixtures shared by the workspace and sidecar tests: real git repositories
 * with a fixed identity, and a check that a process is really gone.
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { git } from "../../packages/workspace/src/git";

export const TEST_GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: "Test Author",
  GIT_AUTHOR_EMAIL: "author@example.test",
  GIT_COMMITTER_NAME: "Test Author",
  GIT_COMMITTER_EMAIL: "author@example.test",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
};

export function testGit(cwd: string, args: string[]): Promise<string> {
  return git(args, { cwd, env: TEST_GIT_ENV });
}

/** A repository on `branch` with one commit holding `files`. */
export async function initRepo(dir: string, files: Record<string, string>, branch = "main"): Promise<string> {
  await testGit(dir, ["init", "-q", "-b", branch]);
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  await testGit(dir, ["add", "-A"]);
  await testGit(dir, ["commit", "-q", "-m", "initial"]);
  return testGit(dir, ["rev-parse", "HEAD"]);
}

/** True when `pid` no longer runs: no /proc entry, or only a zombie waiting to be reaped. */
export function processGone(pid: number): boolean {
  const statPath = `/proc/${pid}/stat`;
  if (!existsSync(statPath)) return true;
  try {
    const stat = readFileSync(statPath, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state === "Z" || state === "X";
  } catch {
    return true;
  }
}
