/**
 * What INSTALL_DEPENDENCIES asks a workspace, through its ToolExecutor (so
 * in remote mode inside the sandbox): where its root is and which lockfiles
 * it tracks (git's listing, through its archiver), and what a setup left
 * behind (command output). Every answer is read as data: nothing here runs
 * a path or a name it got back.
 */
import { createHash } from "node:crypto";
import type { ToolExecutor, WorkspaceArchiver } from "@repo/workspace";
import { WorkspaceError } from "../errors";

/** Files whose content decides what a setup installs, wherever they are in the repository. */
export const LOCKFILES = [
  "package-lock.json",
  "npm-shrinkwrap.json",
  "yarn.lock",
  "pnpm-lock.yaml",
  "bun.lock",
  "bun.lockb",
  "requirements*.txt",
  "constraints*.txt",
  "Pipfile.lock",
  "poetry.lock",
  "uv.lock",
  "pdm.lock",
  "Gemfile.lock",
  "Cargo.lock",
  "go.sum",
  "composer.lock",
  "mix.lock",
  "pubspec.lock",
  "packages.lock.json",
  "flake.lock",
  ".tool-versions",
  ".nvmrc",
  ".node-version",
  ".python-version",
];

const PROBE_TIMEOUT_MS = 120_000;
const MAX_NAMED_FILES = 200;

export interface Captured {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `command` in the workspace and collects its output. */
export async function capture(
  executor: ToolExecutor,
  command: string,
  options: { signal: AbortSignal; env?: Record<string, string> },
): Promise<Captured> {
  let stdout = "";
  let stderr = "";
  const result = await executor.runCommand(command, {
    signal: options.signal,
    env: options.env,
    timeoutMs: PROBE_TIMEOUT_MS,
    onOutput: (stream, text) => {
      if (stream === "stdout") stdout += text;
      else stderr = (stderr + text).slice(-2000);
    },
  });
  options.signal.throwIfAborted();
  return { exitCode: result.exitCode, stdout, stderr };
}

async function captureOk(executor: ToolExecutor, command: string, signal: AbortSignal): Promise<string> {
  const result = await capture(executor, command, { signal });
  if (result.exitCode !== 0) {
    throw new WorkspaceError(
      `\`${command.split(" ").slice(0, 3).join(" ")}\` failed in the workspace (exit ${result.exitCode}): ${result.stderr.trim()}`,
      null,
      false,
    );
  }
  return result.stdout;
}

/** Words of the setup script that may name files (`requirements-dev.txt`, `tools/deps.lock`). */
function namedFiles(script: string): string[] {
  const words = script.match(/[A-Za-z0-9._@+/-]+/g) ?? [];
  // Only relative paths can name a file of the repository (git refuses the others).
  const files = words.filter(
    (w) =>
      w.length <= 255 && !w.startsWith("-") && !w.startsWith("/") && /[./]/.test(w) && !w.split("/").includes(".."),
  );
  return [...new Set(files)].slice(0, MAX_NAMED_FILES);
}

/**
 * The workspace root as its commands see it (symlinks resolved) and its
 * tracked lockfiles (anywhere) with the tracked files the script names, with
 * their blob ids: `git ls-files -s` records, sorted. Two workspaces agree on
 * the lockfiles exactly when those files agree. Read through the archiver,
 * without a command: in a sandbox each command pays for a sandbox of its own.
 */
export async function rootAndLockfiles(
  archiver: WorkspaceArchiver,
  script: string,
): Promise<{ root: string; lockfiles: string }> {
  const named = namedFiles(script);
  const specs = [...LOCKFILES.map((name) => `:(glob)**/${name}`), ...named.map((file) => `:(literal)${file}`)];
  const { root, records } = await archiver.trackedFiles(specs);
  if (!root.startsWith("/")) {
    throw new WorkspaceError(`the workspace gave no root: ${JSON.stringify(root.slice(0, 200))}`, null, false);
  }
  const namedSet = new Set(named);
  const lockfilePattern = new RegExp(
    `(^|/)(${LOCKFILES.map((n) => n.replace(/[.+]/g, "\\$&").replace("*", "[^/]*")).join("|")})$`,
  );
  const lockfiles = records
    .split("\0")
    .filter((record) => {
      const path = record.slice(record.indexOf("\t") + 1);
      // A literal pathspec also matches everything under a directory of that name: keep exact files only.
      return record.includes("\t") && (lockfilePattern.test(path) || namedSet.has(path));
    })
    .sort()
    .join("\n");
  return { root, lockfiles };
}

export interface KeyInput {
  repoUrl: string;
  platform: string;
  script: string;
  env: Record<string, string>;
  secretNames: string[];
  lockfiles: string;
}

/** The cache key: what a setup's products depend on, hashed. Secret values are not part of it, only names. */
export function environmentKey(input: KeyInput): string {
  const env = Object.entries(input.env).sort(([a], [b]) => a.localeCompare(b));
  const canonical = JSON.stringify([
    1,
    input.repoUrl,
    input.platform,
    input.script,
    env,
    [...input.secretNames].sort(),
    input.lockfiles,
  ]);
  return createHash("sha256").update(canonical).digest("hex");
}

export type SetupProducts = { cacheable: true; paths: string[] } | { cacheable: false; reason: string };

const IGNORED_PATHS = "git ls-files -z --others --ignored --exclude-standard --directory";

/**
 * What the setup left that git ignores — the products to cache. Cacheable
 * only when that is all it did: a setup that changed tracked files or left
 * files git does not ignore would not be reproduced by restoring the ignored
 * ones, so it runs every time.
 */
export async function setupProducts(executor: ToolExecutor, signal: AbortSignal): Promise<SetupProducts> {
  const status = await captureOk(executor, "git status --porcelain=v1 --untracked-files=normal", signal);
  const lines = status.split("\n").filter((line) => line.trim() !== "");
  if (lines.length > 0) {
    const shown = lines
      .slice(0, 5)
      .map((line) => line.slice(3))
      .join(", ");
    return {
      cacheable: false,
      reason: `setup changed files git tracks or left files it does not ignore (${shown}${lines.length > 5 ? ", …" : ""})`,
    };
  }
  const paths = (await captureOk(executor, IGNORED_PATHS, signal)).split("\0").filter((p) => p !== "");
  if (paths.length === 0) return { cacheable: false, reason: "setup left no ignored files to cache" };
  if (paths.some((p) => p.includes("\n"))) return { cacheable: false, reason: "a product's name holds a newline" };
  return { cacheable: true, paths };
}

/** The first product (a file under the ignored paths) holding one of `values`, or null. */
export async function productContaining(
  executor: ToolExecutor,
  values: readonly string[],
  signal: AbortSignal,
): Promise<string | null> {
  if (values.length === 0) return null;
  // The values travel as the command's environment, never on its command line.
  const env = Object.fromEntries(values.map((value, i) => [`UMBRA_NEEDLE_${i}`, value]));
  const patterns = values.map((_, i) => `-e "$UMBRA_NEEDLE_${i}"`).join(" ");
  const result = await capture(
    executor,
    `${IGNORED_PATHS} | xargs -0 -r grep -rlF ${patterns} -- 2>/dev/null | head -n 1`,
    {
      signal,
      env,
    },
  );
  return result.stdout.trim() || null;
}

/**
 * A product that names the workspace's own root (a venv's scripts, an
 * absolute symlink into the workspace) breaks when restored under another
 * root (`root`, symlinks resolved, as rootAndLockfiles gave it): the first
 * such file, or null when the products can go anywhere.
 */
export async function rootBoundProduct(
  executor: ToolExecutor,
  root: string,
  signal: AbortSignal,
): Promise<string | null> {
  const logical = (await captureOk(executor, 'printf %s "$PWD"', signal)).trim();
  const mentioning = await productContaining(executor, [...new Set([root, logical])], signal);
  if (mentioning) return mentioning;
  const links = await capture(
    executor,
    `${IGNORED_PATHS} | xargs -0 -r sh -c 'find "$@" -type l \\( -lname "$UMBRA_ROOT_P/*" -o -lname "$UMBRA_ROOT_L/*" \\) -print 2>/dev/null' sh | head -n 1`,
    { signal, env: { UMBRA_ROOT_P: root, UMBRA_ROOT_L: logical } },
  );
  return links.stdout.trim() || null;
}
