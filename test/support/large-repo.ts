/**
 * Large git repositories for tests and benchmarks, generated from random
 * bytes: `files` binary files in nested directories, one big file, and a few
 * small text files that turns edit. Committed once and packed, the way a
 * repository fetched from a forge arrives, so fetching it costs what fetching
 * a real repository of that size costs.
 *
 * The text files have the same paths and sizes in every repository made
 * here, so a one-line change to one of them makes the same objects whatever
 * the repository's size.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./git";

export interface LargeRepoSpec {
  /** Random binary files besides the big file and the text files. */
  files: number;
  /** Size of each of those files, bytes. */
  fileBytes: number;
  /** Size of `big.bin`, bytes (0: none). */
  bigFileBytes: number;
}

export interface LargeRepo {
  path: string;
  /** Every file in the commit. */
  fileCount: number;
  /** Bytes of all files. */
  bytes: number;
  commit: string;
}

/** A text file every generated repository has; a turn edits it. */
export const EDITED_FILE = "src/app/main.txt";
const TEXT_FILES: Record<string, string> = {
  "README.md": "# Generated\n\nA generated repository.\n",
  [EDITED_FILE]: `${Array.from({ length: 50 }, (_, i) => `line ${i + 1}`).join("\n")}\n`,
};

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: "Test",
  GIT_AUTHOR_EMAIL: "test@example.com",
  GIT_COMMITTER_NAME: "Test",
  GIT_COMMITTER_EMAIL: "test@example.com",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
};

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, { cwd, env: GIT_ENV, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }).trim();
}

/** Generates, commits and packs a repository on branch `main`; see the module comment. */
export function createLargeRepo(spec: LargeRepoSpec, dir = tempDir("umbra-large-repo-")): LargeRepo {
  git(dir, "init", "--quiet", "-b", "main");
  let bytes = 0;
  for (const [path, content] of Object.entries(TEXT_FILES)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), content);
    bytes += Buffer.byteLength(content);
  }
  // 20 files a directory, 20 directories a group: paths a few levels deep, like real source trees.
  for (let i = 0; i < spec.files; i++) {
    const folder = join(dir, "data", `group-${Math.floor(i / 400)}`, `dir-${Math.floor(i / 20) % 20}`);
    if (i % 20 === 0) mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, `file-${i}.bin`), randomBytes(spec.fileBytes));
    bytes += spec.fileBytes;
  }
  if (spec.bigFileBytes > 0) {
    writeFileSync(join(dir, "big.bin"), randomBytes(spec.bigFileBytes));
    bytes += spec.bigFileBytes;
  }
  // Random bytes do not compress: level 0 and no delta search save minutes and change nothing.
  git(dir, "-c", "core.looseCompression=0", "add", "-A");
  git(dir, "commit", "--quiet", "-m", "generated");
  git(dir, "-c", "pack.compression=0", "repack", "-a", "-d", "-q", "--window=0");
  const fileCount = Object.keys(TEXT_FILES).length + spec.files + (spec.bigFileBytes > 0 ? 1 : 0);
  return { path: dir, fileCount, bytes, commit: git(dir, "rev-parse", "HEAD") };
}
