/**
 * A repository built from a large real tree on this machine: the checkout's
 * own node_modules (JavaScript, TypeScript declarations, JSON, source maps,
 * a few prebuilt binaries), committed once and packed, the way a repository
 * fetched from a forge arrives. Kept between runs (repos.ts cachedRepo).
 *
 * Which packages: the top-level ones (`name`, `@scope/name`; not the
 * workspace links `@repo/*`, not `.bin`) in name order, each taken if it fits
 * in what is left of the budget (files and bytes) and passed over otherwise.
 * A package larger than a tenth of the byte budget is passed over too: the
 * prebuilt CLIs (@anthropic-ai/claude-code-…, @openai/codex-…,
 * @biomejs/cli-…) are 0.9 GB of node_modules' 1.3 GB in a few dozen files,
 * and taken in name order they would fill the budget alone, leaving a
 * repository of three binaries instead of a large tree. Nested `.git`
 * entries are left out; symlinks are committed as symlinks.
 *
 * The files are committed straight from node_modules (git's work tree is
 * node_modules, its git directory the cache entry), so nothing is copied and
 * node_modules is only read. The cache key hashes the names and versions
 * taken, so a changed node_modules builds a new repository.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type BenchRepo, cachedRepo, GIT_ENV, git } from "./repos";

export interface TreeBudget {
  files: number;
  bytes: number;
}

interface Package {
  /** `name` or `@scope/name`, its path under node_modules. */
  name: string;
  version: string;
  /** Its files and symlinks, paths relative to node_modules. */
  paths: string[];
  bytes: number;
}

export interface NodeModulesRepo extends BenchRepo {
  /** `name@version` of every package taken, in name order. */
  packages: string[];
  /** Two text files a turn can change (`<package>/package.json`). */
  editableFiles: [string, string];
}

export interface NodeModulesSelection {
  repo: NodeModulesRepo;
  /** How long building it took, ms; null when the cache had it. */
  buildMs: number | null;
  /** Packages passed over, with their size. */
  skipped: { name: string; files: number; bytes: number }[];
  /** Packages node_modules has. */
  available: number;
}

/** Bumped when the way the repository is built changes, so the cache does not serve the old one. */
const RECIPE = "node-modules-v1";

/** Files (and symlinks) under `root/rel`, without `.git` entries; adds their paths and sizes to `into`. */
function walk(root: string, rel: string, into: { paths: string[]; bytes: number }): void {
  for (const entry of readdirSync(join(root, rel), { withFileTypes: true })) {
    if (entry.name === ".git") continue;
    const path = `${rel}/${entry.name}`;
    if (entry.isDirectory()) walk(root, path, into);
    else if (entry.isFile() || entry.isSymbolicLink()) {
      into.paths.push(path);
      into.bytes += lstatSync(join(root, path)).size;
    }
  }
}

function readPackages(root: string): Package[] {
  const names: string[] = [];
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith(".")) continue; // symlinks (workspace links) are not directories here
    if (!entry.name.startsWith("@")) names.push(entry.name);
    else {
      for (const inner of readdirSync(join(root, entry.name), { withFileTypes: true })) {
        if (inner.isDirectory()) names.push(`${entry.name}/${inner.name}`);
      }
    }
  }
  return names.sort().map((name) => {
    const into = { paths: [] as string[], bytes: 0 };
    walk(root, name, into);
    let version = "?";
    try {
      version = String(JSON.parse(readFileSync(join(root, name, "package.json"), "utf8")).version ?? "?");
    } catch {
      // a directory with no package.json of its own: still part of the tree
    }
    return { name, version, ...into };
  });
}

function build(gitDir: string, root: string, taken: Package[]): Omit<NodeModulesRepo, "path"> {
  const gitIn = ["--literal-pathspecs", `--git-dir=${gitDir}`, `--work-tree=${root}`];
  git(root, "init", "--quiet", "--bare", "-b", "main", gitDir);
  execFileSync("git", [...gitIn, "add", "--force", "--pathspec-from-file=-", "--pathspec-file-nul"], {
    cwd: root,
    env: GIT_ENV,
    input: taken.flatMap((p) => p.paths).join("\0"),
    stdio: ["pipe", "ignore", "inherit"],
  });
  git(root, ...gitIn, "commit", "--quiet", "-m", `node_modules: ${taken.length} packages`);
  git(gitDir, "repack", "-a", "-d", "-q");
  rmSync(join(gitDir, "index"), { force: true });
  let files = 0;
  let bytes = 0;
  for (const line of git(gitDir, "ls-tree", "-r", "-z", "--long", "HEAD").split("\0")) {
    const match = /^\d+ blob [0-9a-f]+\s+(\d+)\t/.exec(line);
    if (!match) continue;
    files++;
    bytes += Number(match[1]);
  }
  const editable = taken.filter((p) => p.paths.includes(`${p.name}/package.json`)).slice(0, 2);
  if (editable.length < 2) throw new Error("fewer than two packages with a package.json");
  return {
    files,
    bytes,
    commit: git(gitDir, "rev-parse", "HEAD"),
    packages: taken.map((p) => `${p.name}@${p.version}`),
    editableFiles: [`${editable[0]!.name}/package.json`, `${editable[1]!.name}/package.json`],
  };
}

/** The repository of `root`'s packages within `budget`, from the cache or built now; see the module comment. */
export function nodeModulesRepo(root: string, budget: TreeBudget): NodeModulesSelection {
  if (!existsSync(root)) throw new Error(`${root} does not exist (run npm ci)`);
  const packages = readPackages(root);
  const taken: Package[] = [];
  const skipped: NodeModulesSelection["skipped"] = [];
  let files = 0;
  let bytes = 0;
  for (const p of packages) {
    const fits =
      p.bytes <= budget.bytes / 10 && files + p.paths.length <= budget.files && bytes + p.bytes <= budget.bytes;
    if (!fits) {
      skipped.push({ name: p.name, files: p.paths.length, bytes: p.bytes });
      continue;
    }
    taken.push(p);
    files += p.paths.length;
    bytes += p.bytes;
  }
  const key = createHash("sha256")
    .update([RECIPE, ...taken.map((p) => `${p.name}@${p.version}`)].join("\n"))
    .digest("hex")
    .slice(0, 16);
  const { repo, buildMs } = cachedRepo<NodeModulesRepo>(`large-real-${key}`, (gitDir) => build(gitDir, root, taken));
  return { repo, buildMs, skipped, available: packages.length };
}
