/**
 * A Node project for the environment-cache benchmark, whose setup is a real
 * `npm ci` of a few hundred packages, and the registry it installs from: a
 * mirror on 127.0.0.1, so every cold setup downloads the same bytes at the
 * same speed whatever the network does.
 *
 * - From the npm registry: the project in bench/fixtures/npm-project (jest
 *   and eslint, 337 packages, versions pinned by its lockfile). The mirror
 *   keeps every tarball under bench/.cache/npm-tarballs, fetched from
 *   registry.npmjs.org once and reused by every later run.
 * - When a tarball is neither cached nor fetchable (no network): a project
 *   of generated packages, as many and served by the same kind of registry,
 *   so the benchmark still measures `npm ci` of a few hundred packages.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startNpmRegistry } from "../../test/support/npm-registry";
import { benchTempDir, commitRepo } from "./repos";

const HERE = dirname(fileURLToPath(import.meta.url));
const FIXTURE = join(HERE, "..", "fixtures", "npm-project");
const TARBALLS = join(HERE, "..", ".cache", "npm-tarballs");
const UPSTREAM = "https://registry.npmjs.org/";
const GENERATED_PACKAGES = 300;

export interface NpmProject {
  /** The project's git repository. */
  path: string;
  packages: number;
  source: "npm registry, mirrored on 127.0.0.1" | "generated packages on 127.0.0.1";
  /** npm_config_registry for its setup. */
  registryUrl: string;
  close(): Promise<void>;
}

interface LockEntry {
  name?: string;
  version?: string;
  resolved?: string;
  integrity?: string;
  link?: boolean;
}

/** The registry path of an entry's tarball: `@scope/name/-/name-1.0.0.tgz`. */
function tarballPath(location: string, entry: LockEntry): string {
  const name = entry.name ?? location.slice(location.lastIndexOf("node_modules/") + "node_modules/".length);
  return `${name}/-/${name.split("/").pop()}-${entry.version}.tgz`;
}

function cacheFile(path: string): string {
  return join(TARBALLS, `${createHash("sha256").update(path).digest("hex").slice(0, 32)}.tgz`);
}

async function fetchUpstream(path: string): Promise<void> {
  const response = await fetch(`${UPSTREAM}${path}`, { signal: AbortSignal.timeout(60_000) });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  const file = cacheFile(path);
  writeFileSync(`${file}.part`, Buffer.from(await response.arrayBuffer()));
  renameSync(`${file}.part`, file);
}

/** Fetches every tarball the cache lacks, a few at a time; false when one cannot be had. */
async function fillMirror(paths: string[], log: (m: string) => void): Promise<boolean> {
  mkdirSync(TARBALLS, { recursive: true });
  const missing = paths.filter((path) => !existsSync(cacheFile(path)));
  if (missing.length === 0) return true;
  log(`fetching ${missing.length} tarballs from ${UPSTREAM} into bench/.cache (once)`);
  let failed: unknown = null;
  const queue = [...missing];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let path = queue.shift(); path && !failed; path = queue.shift()) {
        await fetchUpstream(path).catch((error) => {
          failed = error;
        });
      }
    }),
  );
  if (failed) log(`the npm registry is not reachable (${failed}); using generated packages instead`);
  return !failed;
}

async function mirrorProject(log: (m: string) => void): Promise<NpmProject | null> {
  const manifest = readFileSync(join(FIXTURE, "package.json"), "utf8");
  const lock = JSON.parse(readFileSync(join(FIXTURE, "package-lock.json"), "utf8")) as {
    packages: Record<string, LockEntry>;
  };
  const entries = Object.entries(lock.packages).filter(([location, e]) => location !== "" && !e.link);
  if (
    !(await fillMirror(
      entries.map(([location, e]) => tarballPath(location, e)),
      log,
    ))
  )
    return null;

  const server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? "/").slice(1).split("?")[0]!);
    const file = cacheFile(path);
    if (!existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    const body = readFileSync(file);
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const registryUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  // Pin every package to the mirror: npm ci then fetches tarballs only, no package documents.
  for (const [location, entry] of entries) entry.resolved = `${registryUrl}${tarballPath(location, entry)}`;
  const path = benchTempDir("npm-project");
  commitRepo(
    path,
    new Map([
      [".gitignore", "node_modules/\n"],
      ["package.json", manifest],
      ["package-lock.json", `${JSON.stringify(lock, null, 2)}\n`],
    ]),
  );
  return {
    path,
    packages: entries.length,
    source: "npm registry, mirrored on 127.0.0.1",
    registryUrl,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Generated packages: each a few small modules, all depended on by the project. */
async function generatedProject(): Promise<NpmProject> {
  const packages = Array.from({ length: GENERATED_PACKAGES }, (_, i) => {
    const name = `bench-generated-${String(i).padStart(3, "0")}`;
    const files: Record<string, string> = {
      "package.json": JSON.stringify({ name, version: "1.0.0", main: "index.js" }),
      "index.js": `module.exports = require("./lib/part-0");\n`,
      "README.md": `# ${name}\n\n${"Generated for the environment-cache benchmark. ".repeat(20)}\n`,
    };
    for (let part = 0; part < 6; part++) {
      files[`lib/part-${part}.js`] = `module.exports = ${JSON.stringify({ name, part, pad: "x".repeat(2000) })};\n`;
    }
    return { name, version: "1.0.0", files };
  });
  const registry = await startNpmRegistry(packages);
  const dependencies = Object.fromEntries(registry.packages.map((p) => [p.name, p.version]));
  const lock = {
    name: "bench-node-project",
    version: "1.0.0",
    lockfileVersion: 3,
    requires: true,
    packages: {
      "": { name: "bench-node-project", version: "1.0.0", dependencies },
      ...Object.fromEntries(
        registry.packages.map((p) => [
          `node_modules/${p.name}`,
          { version: p.version, resolved: p.tarballUrl, integrity: p.integrity },
        ]),
      ),
    },
  };
  const path = benchTempDir("npm-generated");
  commitRepo(
    path,
    new Map([
      [".gitignore", "node_modules/\n"],
      [
        "package.json",
        `${JSON.stringify({ name: "bench-node-project", version: "1.0.0", private: true, dependencies })}\n`,
      ],
      ["package-lock.json", `${JSON.stringify(lock, null, 2)}\n`],
    ]),
  );
  return {
    path,
    packages: packages.length,
    source: "generated packages on 127.0.0.1",
    registryUrl: registry.url,
    close: () => registry.close(),
  };
}

export async function prepareNpmProject(log: (m: string) => void): Promise<NpmProject> {
  return (await mirrorProject(log)) ?? (await generatedProject());
}
