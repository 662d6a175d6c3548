/**
 * Where the agent CLIs' executables are: CLAUDE_CODE_BIN / CODEX_BIN when
 * set, else the native executable of the platform package npm installed
 * beside the server.
 *
 * Why the native executable and not the package's `bin`: Claude Code's `bin`
 * is a placeholder that its install script replaces (install scripts do not
 * run here) and its wrapper package needs Node 22; Codex's `bin` is a Node
 * launcher. Both native executables run on their own, so the same path works
 * inside a sandbox that has no Node at all.
 *
 * Invariant: a resolved binary names the directory that holds everything it
 * loads at run time (`mountDir`), so a sandbox can bind exactly that,
 * read-only, at the same path.
 */
import { execFile } from "node:child_process";
import { accessSync, constants, realpathSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { delimiter, dirname, isAbsolute, join } from "node:path";

export type AgentCli = "claude-code" | "codex";

export interface AgentCliBinary {
  /** Absolute path of the executable. */
  path: string;
  /** The directory holding the executable and its run-time files (bind it read-only into sandboxes). */
  mountDir: string;
  source: "environment" | "package";
}

export type AgentCliResolution = { ok: true; binary: AgentCliBinary } | { ok: false; reason: string };

export interface Platform {
  os: NodeJS.Platform;
  arch: string;
  /** Linux with musl libc (Alpine) rather than glibc. */
  musl: boolean;
}

export const BINARY_VARIABLE: Record<AgentCli, string> = { "claude-code": "CLAUDE_CODE_BIN", codex: "CODEX_BIN" };

export function currentPlatform(): Platform {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return {
    os: process.platform,
    arch: process.arch,
    musl: process.platform === "linux" && !report?.header?.glibcVersionRuntime,
  };
}

/** The executable of `cli`: `override` (CLAUDE_CODE_BIN / CODEX_BIN) when given, else the installed package's. */
export function resolveAgentCli(
  cli: AgentCli,
  override?: string,
  platform: Platform = currentPlatform(),
): AgentCliResolution {
  if (override) return fromOverride(cli, override);
  const location = packageLocation(cli, platform);
  if (!location) return { ok: false, reason: `no ${cli} package is published for ${platform.os}-${platform.arch}` };
  const require = createRequire(import.meta.url);
  const searchFrom = [require];
  // Codex's platform package is a dependency of @openai/codex; npm may nest it there.
  if (cli === "codex") {
    try {
      searchFrom.push(createRequire(require.resolve("@openai/codex/package.json")));
    } catch {
      // @openai/codex itself is not installed; the direct lookup below says so
    }
  }
  for (const from of searchFrom) {
    let root: string;
    try {
      root = dirname(from.resolve(`${location.pkg}/package.json`));
    } catch {
      continue;
    }
    const path = join(root, location.executable);
    if (!isExecutable(path)) return { ok: false, reason: `${path} is missing or not executable` };
    return { ok: true, binary: { path, mountDir: join(root, location.mountDir), source: "package" } };
  }
  return {
    ok: false,
    reason: `${location.pkg} is not installed (it is an optional dependency; or set ${BINARY_VARIABLE[cli]})`,
  };
}

/** Runs `<binary> --version`; resolves with the version line, or rejects with why it does not run. */
export function probeAgentCli(binary: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      binary,
      ["--version"],
      { timeout: timeoutMs, env: { PATH: process.env.PATH ?? "" } },
      (error, stdout, stderr) => {
        if (error) {
          const detail =
            String(stderr || error.message)
              .trim()
              .split("\n")
              .at(-1) ?? "";
          reject(new Error(`${binary} --version failed: ${detail}`));
        } else {
          resolve(String(stdout).trim());
        }
      },
    );
  });
}

const codexFeatureCache = new Map<string, Promise<Set<string>>>();

/** The feature names `codex features list` knows (for `--disable`, which refuses unknown names). */
export function codexFeatures(binary: string, timeoutMs = 10_000): Promise<Set<string>> {
  let cached = codexFeatureCache.get(binary);
  if (!cached) {
    cached = new Promise((resolve) => {
      execFile(
        binary,
        ["features", "list"],
        { timeout: timeoutMs, env: { PATH: process.env.PATH ?? "" } },
        (error, stdout) => {
          const names = error
            ? []
            : String(stdout)
                .split("\n")
                .map((line) => line.trim().split(/\s+/)[0] ?? "");
          resolve(new Set(names.filter(Boolean)));
        },
      );
    });
    codexFeatureCache.set(binary, cached);
  }
  return cached;
}

function fromOverride(cli: AgentCli, override: string): AgentCliResolution {
  const variable = BINARY_VARIABLE[cli];
  const path = isAbsolute(override) ? override : findOnPath(override);
  if (!path) return { ok: false, reason: `${variable}=${override} is not on PATH` };
  if (!isExecutable(path)) return { ok: false, reason: `${variable}=${path} is missing or not executable` };
  return { ok: true, binary: { path, mountDir: dirname(realpathSync(path)), source: "environment" } };
}

function packageLocation(
  cli: AgentCli,
  platform: Platform,
): { pkg: string; executable: string; mountDir: string } | null {
  const { os, arch } = platform;
  if ((os !== "linux" && os !== "darwin") || (arch !== "x64" && arch !== "arm64")) return null;
  if (cli === "claude-code") {
    const pkg = `@anthropic-ai/claude-code-${os}-${arch}${platform.musl ? "-musl" : ""}`;
    return { pkg, executable: "claude", mountDir: "." };
  }
  // Codex ships one statically linked Linux build (musl) for glibc and musl alike.
  const cpu = arch === "x64" ? "x86_64" : "aarch64";
  const triple = os === "linux" ? `${cpu}-unknown-linux-musl` : `${cpu}-apple-darwin`;
  return { pkg: `@openai/codex-${os}-${arch}`, executable: `vendor/${triple}/bin/codex`, mountDir: `vendor/${triple}` };
}

function findOnPath(command: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && isExecutable(join(dir, command))) return join(dir, command);
  }
  return null;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
