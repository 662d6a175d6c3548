/**
 * Templates of the embedded database. Creating one from nothing (initdb, then
 * every migration) takes seconds; where many are created — a test or
 * benchmark run starts hundreds of servers, each on a fresh data directory —
 * a new database is instead copied from a template made once: a fresh,
 * migrated data directory kept in the template directory, one per PGlite
 * build, start parameters and set of migrations (its name is a hash of them,
 * so a changed migration makes a new template rather than reusing a stale
 * one).
 *
 * The template is built under a temporary name and renamed into place only
 * once complete, so a process never copies half a template; processes that
 * build the same template at once each rename theirs, and the losers' are
 * thrown away. Templates left unused for a week go when a new one is built.
 * The directory is the current user's alone (0700, and one
 * owned by anyone else is refused): a database copied from it trusts it.
 */
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/**
 * PGlite's version, from the package.json above its entry point (the package
 * exports no package.json), or null when it cannot be found (a bundled server
 * without node_modules).
 */
function pgliteVersion(): string | null {
  let dir: string;
  try {
    dir = dirname(createRequire(import.meta.url).resolve("@electric-sql/pglite"));
  } catch {
    return null;
  }
  for (;;) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "@electric-sql/pglite") return pkg.version ?? null;
    }
    if (dirname(dir) === dir) return null;
    dir = dirname(dir);
  }
}

/**
 * The template's name: a hash of PGlite's version, the start parameters and
 * every migration file; null when PGlite's version is unknown, since a
 * template another PGlite made might not open.
 */
export function templateName(startParams: readonly string[], migrationsFolder: string): string | null {
  const version = pgliteVersion();
  if (!version) return null;
  const hash = createHash("sha256").update(version).update("\0").update(JSON.stringify(startParams));
  const files = readdirSync(migrationsFolder, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
  for (const file of files)
    hash.update("\0").update(file.slice(migrationsFolder.length)).update("\0").update(readFileSync(file));
  return `pglite-${hash.digest("hex").slice(0, 16)}`;
}

function ensureOwnDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = statSync(dir);
  if (process.getuid && stat.uid !== process.getuid()) {
    throw new Error(`the database template directory ${dir} belongs to another user (uid ${stat.uid})`);
  }
}

/** A template or a half-built one no process has touched for this long is removed when a new one is built. */
const STALE_MS = 7 * 24 * 3600 * 1000;

/**
 * Removes the templates other than `keep` (made for other migrations or
 * another PGlite) and half-built ones a crash left, once untouched for
 * STALE_MS: each is a whole database, and every changed migration adds one.
 * A checkout that still needs a removed template builds it again.
 */
function removeStale(templateDir: string, keep: string): void {
  for (const entry of readdirSync(templateDir)) {
    if (entry === keep || !/^\.?pglite-/.test(entry)) continue;
    const path = join(templateDir, entry);
    const stat = statSync(path, { throwIfNoEntry: false });
    if (stat && Date.now() - stat.mtimeMs > STALE_MS) rmSync(path, { recursive: true, force: true });
  }
}

/**
 * Fills the new data directory `path` from the template `name` in
 * `templateDir`, first building the template with `create` (which makes a
 * fresh, migrated database in the directory it is given) when there is none.
 */
export async function copyFromTemplate(
  templateDir: string,
  name: string,
  path: string,
  create: (dir: string) => Promise<void>,
): Promise<void> {
  ensureOwnDirectory(templateDir);
  const template = join(templateDir, name);
  if (!existsSync(join(template, "PG_VERSION"))) {
    const building = mkdtempSync(join(templateDir, `.${name}-`));
    try {
      await create(building);
      renameSync(building, template);
      removeStale(templateDir, name);
    } catch (error) {
      // Another process renamed its template into place first: use that one.
      if (!existsSync(join(template, "PG_VERSION"))) throw error;
    } finally {
      rmSync(building, { recursive: true, force: true });
    }
  }
  cpSync(template, path, { recursive: true });
}
