/**
 * Objects a sandbox borrows instead of receiving. Beside each mirror, a
 * directory holds packs of the repository's upstream history only (what the
 * mirror fetched into `refs/remotes/origin/*`) and a `tips` file naming the
 * commits whose whole history those packs hold. A sandbox on this host gets
 * the directory read-only and uses it as git alternates
 * (apps/sidecar/src/workspace-git.ts): a new sandbox is then sent only the
 * task's own commits, and pays for the checkout, not for the history.
 *
 * Invariants:
 * - Upstream objects only: each pack holds the history of origin's branch
 *   tips beyond the tips already held, read from the mirror by those refs.
 *   A task branch's commits never enter, so no sandbox can read another
 *   task's work through it.
 * - A tip is named only once its objects are there: git writes a pack's
 *   index last, and `tips` is replaced by a rename after the pack is made.
 * - Nothing a sandbox may be reading is removed or changed: packs are only
 *   added. Past MAX_PACKS no more are added; the tips held then stay, and
 *   a sandbox is sent what lies beyond them, as before there were any.
 * - Every tip is pinned in the mirror (`refs/umbra/borrowed/<sha>`), so the
 *   mirror keeps them and can always leave their history out of a pack.
 */
import { chmod, mkdir, readdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { readBorrowedTips } from "@repo/workspace";
import { knownCommits } from "./pack-transfer";
import { storeGit, storeGitRun, TRANSFER_TIMEOUT_MS } from "./store-git";

/** Packs past this many are not added (see the module comment). */
export const MAX_PACKS = 64;
const PIN_PREFIX = "refs/umbra/borrowed/";
const SHA = /^[0-9a-f]{40,64}$/;

/** The borrowed-objects directory of `mirror` (`<name>.git` → `<name>.borrowed`). */
export function borrowedDir(mirror: string): string {
  return `${mirror.replace(/\.git$/, "")}.borrowed`;
}

/**
 * Brings `mirror`'s borrowed objects up to its upstream branches: packs the
 * history of origin's branches beyond the tips held, then names the new
 * tips. Run under the mirror's lock, after a fetch. Returns the directory.
 */
export async function refreshBorrowed(mirror: string, signal?: AbortSignal): Promise<string> {
  const dir = borrowedDir(mirror);
  const packDir = join(dir, "objects", "pack");
  await mkdir(packDir, { recursive: true });
  // A sandbox reads them as another user, whatever this process's umask: readable by all, written by none but it.
  for (const path of [dir, join(dir, "objects"), packDir]) await chmod(path, 0o755);
  // Tips an earlier mirror of the same repository left (it was made anew) cannot be excluded from this one.
  const held = await knownCommits(mirror, await readBorrowedTips(dir));
  const upstream = await upstreamTips(mirror);
  const revisions = [...upstream, ...held.map((sha) => `^${sha}`)];
  if (upstream.length === 0 || !(await reachesBeyond(mirror, revisions))) return dir;
  const packs = (await readdir(packDir)).filter((name) => name.endsWith(".pack")).length;
  if (packs >= MAX_PACKS) return dir;
  await storeGit(["pack-objects", "--revs", "--delta-base-offset", "-q", join(packDir, "pack")], {
    cwd: mirror,
    input: `${revisions.join("\n")}\n`,
    timeoutMs: TRANSFER_TIMEOUT_MS,
    lowPriority: true,
    signal,
  });
  for (const name of await readdir(packDir)) await chmod(join(packDir, name), 0o444);
  const tips = await independent(mirror, [...new Set([...held, ...upstream])]);
  await storeGit(["update-ref", "--stdin"], {
    cwd: mirror,
    input: tips.map((sha) => `update ${PIN_PREFIX}${sha} ${sha}\n`).join(""),
  });
  const temporary = join(dir, `tips.${process.pid}.tmp`);
  await writeFile(temporary, tips.map((sha) => `${sha}\n`).join(""));
  await chmod(temporary, 0o644);
  await rename(temporary, join(dir, "tips"));
  // Pins of tips a newer one descends from are no longer needed: the newer pin keeps their history.
  const stale = held.filter((sha) => !tips.includes(sha));
  if (stale.length > 0) {
    await storeGit(["update-ref", "--stdin"], {
      cwd: mirror,
      input: stale.map((sha) => `delete ${PIN_PREFIX}${sha}\n`).join(""),
    });
  }
  return dir;
}

/** The commits origin's branches point at, each once. */
async function upstreamTips(mirror: string): Promise<string[]> {
  const out = await storeGit(["for-each-ref", "--format=%(objectname) %(objecttype)", "refs/remotes/origin/"], {
    cwd: mirror,
  });
  const tips = new Set<string>();
  for (const line of out.split("\n")) {
    const [sha, type] = line.split(" ");
    if (sha && type === "commit") tips.add(sha);
  }
  return [...tips];
}

/** Whether `revisions` (rev-list arguments, `^sha` excludes) name any commit: upstream moved past the tips held. */
async function reachesBeyond(mirror: string, revisions: string[]): Promise<boolean> {
  const out = await storeGit(["rev-list", "--max-count=1", "--stdin"], {
    cwd: mirror,
    input: `${revisions.join("\n")}\n`,
  });
  return out.trim() !== "";
}

/** `commits` less those another of them descends from (their history is held through it). */
async function independent(mirror: string, commits: string[]): Promise<string[]> {
  if (commits.length < 2) return commits;
  const result = await storeGitRun(["merge-base", "--independent", ...commits], { cwd: mirror });
  if (result.exitCode !== 0) return commits;
  const kept = result.stdout
    .toString("utf8")
    .split("\n")
    .filter((line) => SHA.test(line));
  return kept.length > 0 ? kept : commits;
}
