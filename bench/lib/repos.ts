/**
 * Real git repositories for the benchmarks, in temp directories: a small one
 * (a handful of files) and a large one (5,000 source-like files, ~10 MB),
 * each written straight to disk and committed once. Contents are generated
 * from a fixed seed, so every run measures the same bytes.
 *
 * A repository that takes minutes to build is kept between runs instead, in
 * a cache directory (cachedRepo): the same name means the same contents, and
 * a cache entry appears whole or not at all.
 *
 * A "cold" copy of a repository is a copy at a new path: the server keys its
 * repository store and its full-text index by URL, so a new path has never
 * been fetched or indexed, while the bytes stay the same.
 */
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: "Bench",
  GIT_AUTHOR_EMAIL: "bench@example.com",
  GIT_COMMITTER_NAME: "Bench",
  GIT_COMMITTER_EMAIL: "bench@example.com",
  GIT_CONFIG_NOSYSTEM: "1",
};

export function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, { cwd, env: GIT_ENV, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }).trim();
}

export interface BenchRepo {
  path: string;
  files: number;
  bytes: number;
  commit: string;
}

/** Every temp directory the benchmarks made, removed by removeTempDirs(). */
const created: string[] = [];

export function benchTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `umbra-bench-${prefix}-`));
  created.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Writes `files` into `dir` and commits them as a new repository on `main`. */
export function commitRepo(dir: string, files: Map<string, string>): BenchRepo {
  git(dir, "init", "--quiet", "-b", "main");
  let bytes = 0;
  for (const [path, content] of files) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
    bytes += Buffer.byteLength(content);
  }
  git(dir, "add", "-A");
  git(dir, "commit", "--quiet", "-m", "initial commit");
  return { path: dir, files: files.size, bytes, commit: git(dir, "rev-parse", "HEAD") };
}

export function createSmallRepo(): BenchRepo {
  const files = new Map<string, string>([
    ["README.md", "# Small\n\nA small repository for the benchmarks.\n"],
    ["package.json", `${JSON.stringify({ name: "small", version: "1.0.0", type: "module" }, null, 2)}\n`],
    ["src/index.ts", 'export function greet(name: string): string {\n  return "hello " + name;\n}\n'],
    ["src/math.ts", "export const add = (a: number, b: number) => a + b;\n"],
    ["test/index.test.ts", 'import { greet } from "../src/index";\nconsole.log(greet("bench"));\n'],
  ]);
  return commitRepo(benchTempDir("small"), files);
}

/** A deterministic pseudo-random generator (mulberry32), so the large repository is the same every run. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = [
  "account",
  "buffer",
  "cache",
  "client",
  "config",
  "context",
  "cursor",
  "deadline",
  "encode",
  "event",
  "fetch",
  "handler",
  "index",
  "lease",
  "logger",
  "metric",
  "parse",
  "queue",
  "record",
  "request",
  "result",
  "retry",
  "schema",
  "session",
  "signal",
  "status",
  "stream",
  "task",
  "timer",
  "worker",
];

function sourceFile(next: () => number, id: number): string {
  const word = () => WORDS[Math.floor(next() * WORDS.length)]!;
  const lines = [`// Module ${id}: ${word()} ${word()} ${word()}.`, `import { ${word()}Of } from "./shared";`, ""];
  const functions = 3 + Math.floor(next() * 6);
  for (let f = 0; f < functions; f++) {
    const name = `${word()}${word()[0]!.toUpperCase()}${word().slice(1)}${f}`;
    lines.push(`export function ${name}(input: string, limit = ${Math.floor(next() * 1000)}): number {`);
    const body = 2 + Math.floor(next() * 6);
    for (let l = 0; l < body; l++) {
      lines.push(`  const ${word()}${l} = input.length * ${Math.floor(next() * 97)} + limit; // ${word()} ${word()}`);
    }
    lines.push(`  return ${word()}Of(input) + limit;`, "}", "");
  }
  return `${lines.join("\n")}\n`;
}

/** 5,000 files by default, in directories of 50, about 2 KB each. */
export function createLargeRepo(fileCount = 5000): BenchRepo {
  const next = random(20_260_101);
  const files = new Map<string, string>();
  files.set("README.md", "# Large\n\nA 5,000-file repository for the benchmarks.\n");
  for (let i = 1; files.size < fileCount; i++) {
    const dir = `packages/pkg-${String(Math.floor(i / 250)).padStart(2, "0")}/src/mod-${String(Math.floor(i / 50) % 5)}`;
    files.set(`${dir}/file-${String(i).padStart(5, "0")}.ts`, sourceFile(next, i));
  }
  return commitRepo(benchTempDir("large"), files);
}

/**
 * Writes dirty pages out (`sync`) and so starts a measurement on a settled
 * disk: creating or deleting thousands of files just before (a repository
 * copy, the previous sample's workspace) otherwise leaves the kernel writing
 * them back during the next sample, which can slow a 5,000-file checkout
 * several-fold and would measure the previous sample, not this one.
 */
export function settleDisk(): void {
  execFileSync("sync");
}

/**
 * The floor of a re-initialization: `git worktree add` of `repo`'s commit
 * into a new directory (the checkout alone, objects already local), timed in
 * ms. The worktree stays until `remove` is called (see localCloneFloor).
 */
export function worktreeFloor(repo: { path: string; commit: string }): { ms: number; remove(): void } {
  const dir = join(benchTempDir("worktree"), "tree");
  const started = performance.now();
  git(repo.path, "worktree", "add", "--quiet", "--detach", dir, repo.commit);
  const ms = performance.now() - started;
  return { ms, remove: () => git(repo.path, "worktree", "remove", "--force", dir) };
}

/** worktreeFloor, the worktree removed again right away, outside the timing. */
export function worktreeFloorMs(repo: { path: string; commit: string }): number {
  const floor = worktreeFloor(repo);
  floor.remove();
  return floor.ms;
}

/**
 * The floor of a first initialization from a path: `git clone --local` of
 * `repo` (objects hard-linked, then the checkout) into a new directory, timed
 * in ms on a settled disk. The clone stays until `remove` is called: deleting
 * tens of thousands of files slows every checkout on this disk for a minute
 * after, so the caller removes it once its own measurements are done.
 */
export function localCloneFloor(repo: { path: string }): { ms: number; remove(): void } {
  const dir = benchTempDir("clone");
  settleDisk();
  const started = performance.now();
  git(dir, "clone", "--local", "--quiet", repo.path, join(dir, "clone"));
  const ms = performance.now() - started;
  return { ms, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Where repositories kept between runs live (cachedRepo). */
export const REPO_CACHE_DIR = join(tmpdir(), "umbra-bench-cache");

/**
 * A repository kept between runs at `<REPO_CACHE_DIR>/<name>/repo.git`,
 * described by `repo.json` beside it. The first run builds it: `build` gets
 * the git directory to create (inside a scratch directory) and returns the
 * description; the scratch directory is renamed into place only then, so an
 * interrupted build leaves no entry a later run would trust. `name` must
 * change whenever the contents would.
 */
export function cachedRepo<T extends BenchRepo>(
  name: string,
  build: (gitDir: string) => Omit<T, "path">,
): { repo: T; buildMs: number | null } {
  const dir = join(REPO_CACHE_DIR, name);
  const describe = (record: Omit<T, "path">) => ({ ...record, path: join(dir, "repo.git") }) as T;
  if (existsSync(join(dir, "repo.json"))) {
    return { repo: describe(JSON.parse(readFileSync(join(dir, "repo.json"), "utf8"))), buildMs: null };
  }
  const scratch = `${dir}.partial-${process.pid}`;
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  try {
    const started = performance.now();
    const record = build(join(scratch, "repo.git"));
    writeFileSync(join(scratch, "repo.json"), `${JSON.stringify(record, null, 2)}\n`);
    rmSync(dir, { recursive: true, force: true }); // a directory with no repo.json is a leftover
    renameSync(scratch, dir);
    return { repo: describe(record), buildMs: performance.now() - started };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** A copy of `repo` at a new path: the same commit, never seen by the server. */
export function coldCopy(repo: BenchRepo): BenchRepo {
  const dir = benchTempDir("copy");
  cpSync(repo.path, dir, { recursive: true });
  return { ...repo, path: dir };
}
