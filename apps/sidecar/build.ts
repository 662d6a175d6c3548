/**
 * Builds the sidecar into one self-contained file, `apps/sidecar/dist/sidecar.mjs`,
 * that needs nothing but Node 20: every dependency is bundled in.
 *
 * `ensureSidecarBundle()` is what the server and the tests call: it rebuilds
 * only when an input changed. Freshness is decided from esbuild's own list of
 * inputs (recorded beside the bundle with their modification times), so a
 * change in @repo/workspace or in a bundled dependency counts too.
 *
 * Invariant: the bundle file is replaced atomically (write, then rename), so
 * a concurrent reader sees the old or the new bundle, never half of one.
 *
 * Run directly (`npm run build -w apps/sidecar`) it always rebuilds.
 */
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";

const PACKAGE_DIR = dirname(fileURLToPath(import.meta.url));
const SOURCE_DIR = join(PACKAGE_DIR, "src");

/** Absolute path of the built sidecar. */
export const SIDECAR_BUNDLE_PATH = join(PACKAGE_DIR, "dist", "sidecar.mjs");
const INPUTS_PATH = join(PACKAGE_DIR, "dist", "sidecar.inputs.json");

// Bundled CommonJS dependencies call require() for Node built-ins; an ES module has no require of its own.
const REQUIRE_SHIM =
  'import { createRequire as __umbraCreateRequire } from "node:module";\nconst require = __umbraCreateRequire(import.meta.url);';

const InputsRecord = z.record(z.string(), z.number());

async function modificationTimes(paths: string[]): Promise<Record<string, number>> {
  const entries = await Promise.all(paths.map(async (path) => [path, (await stat(path)).mtimeMs] as const));
  return Object.fromEntries(entries);
}

async function writeAtomically(path: string, content: string | Uint8Array): Promise<void> {
  const temporary = `${path}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(temporary, content);
  await rename(temporary, path);
}

/** Builds the bundle unconditionally; returns its path. */
export async function buildSidecarBundle(): Promise<string> {
  const { build } = await import("esbuild");
  const result = await build({
    absWorkingDir: PACKAGE_DIR,
    entryPoints: [join(SOURCE_DIR, "main.ts")],
    outfile: SIDECAR_BUNDLE_PATH,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    banner: { js: REQUIRE_SHIM },
    metafile: true,
    write: false,
    logLevel: "silent",
  });
  const output = result.outputFiles.find((file) => file.path === SIDECAR_BUNDLE_PATH);
  if (!output) throw new Error("esbuild produced no sidecar bundle");
  const inputs = [
    ...Object.keys(result.metafile.inputs).map((input) => resolve(PACKAGE_DIR, input)),
    fileURLToPath(import.meta.url),
  ];
  await mkdir(dirname(SIDECAR_BUNDLE_PATH), { recursive: true });
  await writeAtomically(SIDECAR_BUNDLE_PATH, output.contents);
  await writeAtomically(INPUTS_PATH, JSON.stringify(await modificationTimes(inputs), null, 2));
  return SIDECAR_BUNDLE_PATH;
}

/** True when the bundle exists and none of its recorded inputs changed or vanished. */
export async function isSidecarBundleFresh(): Promise<boolean> {
  try {
    await stat(SIDECAR_BUNDLE_PATH);
    const recorded = InputsRecord.parse(JSON.parse(await readFile(INPUTS_PATH, "utf8")));
    const current = await modificationTimes(Object.keys(recorded));
    return Object.entries(recorded).every(([path, mtime]) => current[path] === mtime);
  } catch {
    return false;
  }
}

let pending: Promise<string> | undefined;

/** The path of an up-to-date sidecar bundle, building it first when an input changed. */
export function ensureSidecarBundle(): Promise<string> {
  pending ??= (async () => {
    try {
      return (await isSidecarBundleFresh()) ? SIDECAR_BUNDLE_PATH : await buildSidecarBundle();
    } finally {
      pending = undefined;
    }
  })();
  return pending;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const path = await buildSidecarBundle();
  process.stdout.write(`sidecar bundle written to ${path}\n`);
}
