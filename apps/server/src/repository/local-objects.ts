/**
 * The first fetch of a repository on this machine's disk, made cheap the way
 * `git clone --local` makes it: the files of its objects directory are
 * hard-linked into the new mirror, so the fetch that follows finds every
 * object it wants present and connected and transfers nothing (git checks
 * that before asking the remote for a pack). Without it, the fetch has the
 * remote repack and send its whole history through a pipe and the mirror
 * index it again: most of a large repository's first initialization.
 *
 * The repository is only read, and never by running git in it (its own
 * configuration could run commands): the objects directory is found on disk
 * (`<path>/objects` of a bare repository, `<path>/.git/objects` of a work
 * tree) and only regular files are linked, from `pack/` and the loose-object
 * directories, never `info/` (alternates) or symlinks. Object files are never
 * changed in place, by git or here; the mirror's own writes go to new files.
 *
 * Linking is an optimization only: it stops at the first file that cannot be
 * linked (another filesystem, protected hard links) and what is missing the
 * fetch then transfers as usual. A repository that borrows objects through
 * alternates has not all of them in its own directory, so nothing is linked.
 *
 * Loose objects are linked too (the fetch finds nothing missing only if all
 * are there), and the caller packs them once the fetch is done: every later
 * pack out of the mirror (a sandbox's branch) would otherwise compress them
 * again, which made a remote 5,000-file initialization 10× slower. A
 * repository with more than LOOSE_LIMIT of them is fetched as usual instead:
 * packing them costs what the fetch costs, with the links on top.
 */
import { link, lstat, mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const LOOSE_DIR = /^[0-9a-f]{2}$/;
const LOOSE_LIMIT = 1000;

/** The local path `repoUrl` names (an absolute path or a file:// URL), or null for a remote URL. */
export function localRepositoryPath(repoUrl: string): string | null {
  const value = repoUrl.trim();
  if (value.startsWith("/")) return value;
  if (/^file:\/\//i.test(value) && URL.canParse(value)) {
    try {
      return fileURLToPath(value);
    } catch {
      return null; // file://host/path: not on this machine
    }
  }
  return null;
}

async function isDirectory(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => null))?.isDirectory() ?? false;
}

async function isFile(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => null))?.isFile() ?? false;
}

/** The objects directory of the repository at `path`, when it holds all of its objects itself. */
async function ownObjectsDir(path: string): Promise<string | null> {
  for (const candidate of [join(path, "objects"), join(path, ".git", "objects")]) {
    if (!(await isDirectory(join(candidate, "pack")))) continue;
    return (await isFile(join(candidate, "info", "alternates"))) ? null : candidate;
  }
  return null;
}

/**
 * Hard-links the object files of the local repository `repoUrl` names into
 * the objects directory of `mirror` (a new, empty bare repository); returns
 * how many loose objects it linked, which the caller packs after the fetch
 * (0 as well for a remote URL or when nothing was linked).
 */
export async function linkLocalObjects(repoUrl: string, mirror: string): Promise<number> {
  const path = localRepositoryPath(repoUrl);
  const source = path && (await ownObjectsDir(path));
  if (!source) return 0;
  const loose: [dir: string, name: string][] = [];
  for (const dir of (await readdir(source)).filter((name) => LOOSE_DIR.test(name))) {
    if (!(await isDirectory(join(source, dir)))) continue;
    for (const name of await readdir(join(source, dir))) loose.push([dir, name]);
    if (loose.length > LOOSE_LIMIT) return 0;
  }
  const files: [dir: string, name: string][] = [];
  // A pack before its index, so the mirror never sees an index whose pack could not be linked.
  for (const name of (await readdir(join(source, "pack"))).filter((n) => n.endsWith(".pack")).sort()) {
    const base = name.slice(0, -".pack".length);
    for (const extension of [".pack", ".idx", ".rev", ".bitmap"]) files.push(["pack", `${base}${extension}`]);
  }
  files.push(...loose);
  let linkedLoose = 0;
  for (const [dir, name] of files) {
    const from = join(source, dir, name);
    if (!(await isFile(from))) continue; // a pack with no .rev or .bitmap; a symlink
    try {
      await mkdir(join(mirror, "objects", dir), { recursive: true });
      await link(from, join(mirror, "objects", dir, name));
    } catch {
      break;
    }
    if (dir !== "pack") linkedLoose++;
  }
  return linkedLoose;
}
