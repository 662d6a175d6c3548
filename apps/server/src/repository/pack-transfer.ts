/**
 * Git packs in and out of a bare mirror, streamed: what moves a task branch
 * between the repository store and a remote workspace.
 *
 * Invariants:
 * - Nothing of a pack is held in this process's memory: packs go from git's
 *   stdout to the caller's stream, and from the caller's stream to git's
 *   stdin; a pack fetched over HTTP goes into git without passing through
 *   this process at all (a StdinFeed, read by the spawn host).
 * - Transfers run below the server's CPU priority: indexing a 1 GiB pack
 *   must not keep the API waiting for a core.
 * - Out: only the objects the receiver lacks (a thin pack of the tip's
 *   history beyond the commits the receiver reported having and the mirror
 *   knows). In: a pack is indexed, completed from the mirror's own objects
 *   (`--fix-thin`), and the new tip is only trusted once every object of its
 *   history beyond the last saved commit is present.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gitFailure, PackMeter, type PackStats, packObjectCount, type StdinFeed } from "@repo/workspace";
import { storeGit, storeGitRun, storeGitStream, TRANSFER_TIMEOUT_MS } from "./store-git";

/** More packs than this in a mirror and a save rolls the small ones together. */
const MAX_PACKS = 32;

/** The commits among `shas` that the mirror has. */
export async function knownCommits(mirror: string, shas: readonly string[]): Promise<string[]> {
  if (shas.length === 0) return [];
  const result = await storeGitRun(["cat-file", "--batch-check=%(objectname) %(objecttype)"], {
    cwd: mirror,
    input: `${shas.join("\n")}\n`,
  });
  const known: string[] = [];
  for (const line of result.stdout.toString("utf8").split("\n")) {
    const [sha, type] = line.split(" ");
    if (sha && type === "commit") known.push(sha);
  }
  return known;
}

/**
 * A thin pack of `tip`'s history beyond the histories of `exclude` (commits
 * the mirror has), streamed. It fails (as a stream error) when git does.
 */
export function packHistory(mirror: string, tip: string, exclude: readonly string[]): Readable {
  const revisions = [tip, ...exclude.map((sha) => `^${sha}`)];
  return storeGitStream(["pack-objects", "--stdout", "--revs", "--thin", "--delta-base-offset", "-q"], {
    cwd: mirror,
    input: `${revisions.join("\n")}\n`,
    timeoutMs: TRANSFER_TIMEOUT_MS,
    lowPriority: true,
  });
}

/**
 * Indexes the pack into the mirror, completing a thin pack from the mirror's
 * objects. A StdinFeed is read by the spawn host straight into git (a large
 * pack then costs this process nothing); a stream passes through here.
 */
export async function indexPack(mirror: string, pack: Readable | StdinFeed): Promise<PackStats> {
  const args = ["index-pack", "--stdin", "--fix-thin"];
  if (!(pack instanceof Readable)) {
    const result = await storeGitRun(args, {
      cwd: mirror,
      stdinFeed: pack,
      timeoutMs: TRANSFER_TIMEOUT_MS,
      lowPriority: true,
    });
    if (result.exitCode !== 0) throw gitFailure(args, result);
    const fed = result.feed ?? { bytes: 0, head: Buffer.alloc(0) };
    return { objects: packObjectCount(fed.head), bytes: fed.bytes };
  }
  const meter = new PackMeter();
  pack.once("error", (error) => meter.destroy(error));
  await storeGit(args, {
    cwd: mirror,
    stdin: pack.pipe(meter),
    timeoutMs: TRANSFER_TIMEOUT_MS,
    lowPriority: true,
  });
  return meter.stats;
}

/** True when every object of `tip`'s history beyond `base`'s is in the mirror. */
export async function isComplete(mirror: string, tip: string, base: string): Promise<boolean> {
  const walk = await storeGitRun(["rev-list", "--objects", "--quiet", tip, `^${base}`], {
    cwd: mirror,
    timeoutMs: TRANSFER_TIMEOUT_MS,
    lowPriority: true,
  });
  return walk.exitCode === 0;
}

export async function isAncestor(mirror: string, ancestor: string, descendant: string): Promise<boolean> {
  const result = await storeGitRun(["merge-base", "--is-ancestor", ancestor, descendant], { cwd: mirror });
  return result.exitCode === 0;
}

/**
 * Each save adds a pack; once there are many, the small ones are rolled
 * together (a geometric repack keeps every object and rewrites little).
 */
export async function consolidatePacks(mirror: string): Promise<void> {
  const names = await readdir(join(mirror, "objects", "pack")).catch(() => [] as string[]);
  if (names.filter((name) => name.endsWith(".pack")).length <= MAX_PACKS) return;
  await storeGit(["repack", "-d", "-q", "--geometric=2"], {
    cwd: mirror,
    timeoutMs: TRANSFER_TIMEOUT_MS,
    lowPriority: true,
  });
}
