/**
 * A Node project for the environment-cache benchmark, whose setup is a real
 * `npm ci` of a few hundred packages, and the registry it installs from, on
 * 127.0.0.1. Everything is built from what is already on this machine: the
 * benchmark never sends traffic off it.
 *
 * - Real packages: the first few hundred (by name) of those installed in this
 *   repository's own node_modules, each published as it is on disk (its
 *   files, its manifest without dependencies and scripts, so that each is a
 *   leaf and nothing runs at install), all depended on by the project. The
 *   installed tree then has real packages' files, sizes and counts.
 * - When this repository has too few installed packages: generated packages,
 *   as many, served by the same kind of registry.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { type RegistryPackage, startNpmRegistry } from "../../test/support/npm-registry";
import { benchTempDir, commitRepo } from "./repos";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPOSITORY = join(HERE, "..", "..");
const PACKAGES = 300;
/** Larger packages are passed over: a few would dominate the tree's size. */
const MAX_PACKAGE_BYTES = 1024 * 1024;

export interface NpmProject {
  /** The project's git repository. */
  path: string;
  packages: number;
  source: "packages from this repository's node_modules on 127.0.0.1" | "generated packages on 127.0.0.1";
  /** npm_config_registry for its setup. */
  registryUrl: string;
  close(): Promise<void>;
}

interface LockEntry {
  version?: string;
  link?: boolean;
}

/** A package's files as installed, without its own nested node_modules; null past the size limit. */
function installedFiles(dir: string): Record<string, string | Buffer> | null {
  const files: Record<string, string | Buffer> = {};
  let bytes = 0;
  const walk = (at: string): boolean => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== "node_modules" && !walk(path)) return false;
      } else if (entry.isFile()) {
        bytes += statSync(path).size;
        if (bytes > MAX_PACKAGE_BYTES) return false;
        files[relative(dir, path)] = readFileSync(path);
      }
    }
    return true;
  };
  return walk(dir) ? files : null;
}

/** The manifest a leaf package is published with: no dependencies, no scripts, no bin links. */
function leafManifest(raw: Buffer | string): string {
  const {
    dependencies,
    optionalDependencies,
    peerDependencies,
    peerDependenciesMeta,
    bundleDependencies,
    bundledDependencies,
    devDependencies,
    scripts,
    bin,
    directories,
    ...rest
  } = JSON.parse(String(raw)) as Record<string, unknown>;
  return JSON.stringify(rest);
}

/** Up to `count` packages of this repository's node_modules, top-level ones only, by name. */
function installedPackages(count: number): RegistryPackage[] {
  const lockFile = join(REPOSITORY, "package-lock.json");
  if (!existsSync(lockFile)) return [];
  const lock = JSON.parse(readFileSync(lockFile, "utf8")) as { packages: Record<string, LockEntry> };
  const locations = Object.keys(lock.packages)
    .filter((location) => /^node_modules\/(@[^/]+\/)?[^/@][^/]*$/.test(location))
    .sort();
  const packages: RegistryPackage[] = [];
  for (const location of locations) {
    if (packages.length === count) break;
    const entry = lock.packages[location]!;
    const dir = join(REPOSITORY, location);
    if (entry.link || !entry.version || !existsSync(join(dir, "package.json"))) continue;
    const files = installedFiles(dir);
    if (!files) continue;
    const name = location.slice("node_modules/".length);
    packages.push({
      name,
      version: entry.version,
      files: { ...files, "package.json": leafManifest(files["package.json"]!) },
    });
  }
  return packages;
}

/** Generated packages: each a few small modules. */
function generatedPackages(count: number): RegistryPackage[] {
  return Array.from({ length: count }, (_, i) => {
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
}

/** A registry of `packages` on 127.0.0.1 and a project depending on all of them, its lockfile pinning each tarball. */
async function projectOf(packages: RegistryPackage[], source: NpmProject["source"]): Promise<NpmProject> {
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
  const path = benchTempDir("npm-project");
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
  return { path, packages: packages.length, source, registryUrl: registry.url, close: () => registry.close() };
}

export async function prepareNpmProject(log: (m: string) => void): Promise<NpmProject> {
  const installed = installedPackages(PACKAGES);
  if (installed.length === PACKAGES) {
    return projectOf(installed, "packages from this repository's node_modules on 127.0.0.1");
  }
  log(`only ${installed.length} packages installed in this repository (npm ci first); using generated packages`);
  return projectOf(generatedPackages(PACKAGES), "generated packages on 127.0.0.1");
}
