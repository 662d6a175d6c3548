/**
 * The environment cache: what a repository's setup produced (its ignored
 * files: node_modules, .venv, …) as one tar archive per key, under
 * `<DATA_DIR>/environments/`, so INSTALL_DEPENDENCIES can put it back
 * instead of running the setup again.
 *
 * Layout: `<key>.tar` (the archive) and `<key>.json` (what it holds). The
 * archive's modification time is its last use: a hit touches it, and when
 * the cache outgrows `maxBytes` the least recently used entries go first.
 * An environment whose products name their workspace's root (a venv) is
 * stored under a key derived from the environment's key and that root, so it
 * serves that workspace only and never replaces another workspace's.
 *
 * Invariants:
 * - An entry is visible only when whole: the archive is written under
 *   `tmp/` and renamed into place, then its description; eviction removes
 *   the description first. A reader with the archive open keeps reading it
 *   even if it is evicted meanwhile.
 * - The cache never holds more than `maxBytes` after a store: the entry just
 *   stored is the last to go, and one larger than the whole cache is refused.
 * - Entries are files only; several servers sharing DATA_DIR see each
 *   other's entries (the byte count of each is its own last scan).
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { errorMessage } from "../errors";
import type { Logger } from "../logger";
import type { Clock } from "../utils/clock";

const Description = z.object({
  version: z.literal(1),
  key: z.string(),
  repoUrl: z.string(),
  /** Workspace paths the archive holds (directories end with `/`). */
  paths: z.array(z.string()),
  /** The workspace root the products mention (not relocatable), or null when they can go anywhere. */
  boundTo: z.string().nullable(),
  bytes: z.number().int().nonnegative(),
  /** How long the setup that produced it took, ms. */
  setupMs: z.number().nonnegative(),
  createdAt: z.string(),
});
export type CachedEnvironment = z.infer<typeof Description> & { file: string };

const KEY = /^[0-9a-f]{64}$/;

/** The key of the entry bound to `root` for the environment `key`. */
function boundKey(key: string, root: string): string {
  return createHash("sha256").update(`${key}\0${root}`).digest("hex");
}
/** A temporary directory this old belongs to a process that died while storing. */
const STALE_TEMP_MS = 24 * 60 * 60_000;

export interface EnvironmentCacheOptions {
  dir: string;
  /** Bound of the cache on disk, bytes (ENVIRONMENT_CACHE_MAX_MB). */
  maxBytes: number;
  clock: Clock;
  log: Logger;
}

export interface CacheCounters {
  hits: number;
  misses: number;
  stores: number;
  evictions: number;
}

export class EnvironmentCache {
  readonly counters: CacheCounters = { hits: 0, misses: 0, stores: 0, evictions: 0 };
  private knownBytes = 0;
  private knownEntries = 0;
  private ready: Promise<void> | null = null;
  /** This process's own scratch directory: servers sharing DATA_DIR never touch each other's. */
  private readonly tempDir: string;

  constructor(private readonly options: EnvironmentCacheOptions) {
    this.tempDir = join(options.dir, "tmp", randomUUID());
  }

  get maxBytes(): number {
    return this.options.maxBytes;
  }

  /** Bytes the cache held at its last scan (start-up, each store). */
  get bytes(): number {
    return this.knownBytes;
  }

  get entries(): number {
    return this.knownEntries;
  }

  /** Creates the directories, clears leftovers of stores a dead process left, counts what is there. Idempotent. */
  init(): Promise<void> {
    this.ready ??= (async () => {
      const tmp = join(this.options.dir, "tmp");
      await mkdir(this.options.dir, { recursive: true, mode: 0o700 });
      await mkdir(this.tempDir, { recursive: true, mode: 0o700 });
      // File times are the system's: compare them with the system clock, not the injected one.
      const staleBefore = Date.now() - STALE_TEMP_MS;
      for (const name of await readdir(tmp)) {
        const info = await stat(join(tmp, name)).catch(() => null);
        if (info && info.mtimeMs < staleBefore) await rm(join(tmp, name), { recursive: true, force: true });
      }
      await this.scan();
    })();
    return this.ready;
  }

  /**
   * The entry for `key` usable in a workspace whose root is `root`: the
   * relocatable one, else the one bound to that very root; or null. Counts a
   * hit or a miss; a hit becomes the most recently used.
   */
  async lookup(key: string, root: string): Promise<CachedEnvironment | null> {
    await this.init();
    let entry = KEY.test(key) ? await this.read(key) : null;
    if (!entry || entry.boundTo !== null) entry = KEY.test(key) ? await this.read(boundKey(key, root)) : null;
    if (!entry || (entry.boundTo !== null && entry.boundTo !== root)) {
      this.counters.misses++;
      return null;
    }
    this.counters.hits++;
    const now = this.options.clock.now();
    await utimes(entry.file, now, now).catch(() => undefined);
    return entry;
  }

  /**
   * Stores a new entry: `fill(file, limitBytes)` writes the archive and
   * returns its size. Evicts least recently used entries to stay within
   * `maxBytes`. Returns the entry, or null when it is larger than the cache.
   */
  async store(
    description: Omit<CachedEnvironment, "file" | "bytes" | "createdAt" | "version">,
    fill: (file: string, limitBytes: number) => Promise<number>,
  ): Promise<CachedEnvironment | null> {
    await this.init();
    if (!KEY.test(description.key)) throw new Error(`not a cache key: ${description.key}`);
    // Each workspace root gets its own bound entry, so two tasks' bound environments never replace each other.
    const key = description.boundTo === null ? description.key : boundKey(description.key, description.boundTo);
    const temp = join(this.tempDir, `${randomUUID()}.tar`);
    try {
      const bytes = await fill(temp, this.options.maxBytes);
      if (bytes > this.options.maxBytes) return null;
      const entry: CachedEnvironment = {
        ...description,
        key,
        version: 1,
        bytes,
        createdAt: this.options.clock.now().toISOString(),
        file: this.archivePath(key),
      };
      const now = this.options.clock.now();
      await utimes(temp, now, now);
      await rename(temp, entry.file);
      const { file: _file, ...saved } = entry;
      const descriptionTemp = join(this.tempDir, `${randomUUID()}.json`);
      await writeFile(descriptionTemp, JSON.stringify(saved), { mode: 0o600 });
      await rename(descriptionTemp, this.descriptionPath(key));
      this.counters.stores++;
      await this.evict(key);
      return entry;
    } finally {
      await rm(temp, { force: true });
    }
  }

  /** Removes an entry (one that failed to restore). */
  async discard(key: string): Promise<void> {
    if (!KEY.test(key)) return;
    await rm(this.descriptionPath(key), { force: true });
    await rm(this.archivePath(key), { force: true });
    await this.scan();
  }

  private archivePath(key: string): string {
    return join(this.options.dir, `${key}.tar`);
  }

  private descriptionPath(key: string): string {
    return join(this.options.dir, `${key}.json`);
  }

  private async read(key: string): Promise<CachedEnvironment | null> {
    try {
      const parsed = Description.safeParse(JSON.parse(await readFile(this.descriptionPath(key), "utf8")));
      if (!parsed.success || parsed.data.key !== key) return null;
      await stat(this.archivePath(key));
      return { ...parsed.data, file: this.archivePath(key) };
    } catch {
      return null;
    }
  }

  /** Every whole entry with its size and last use, least recently used first. */
  private async scan(): Promise<{ key: string; bytes: number; usedAt: number }[]> {
    const names = await readdir(this.options.dir).catch(() => [] as string[]);
    const entries: { key: string; bytes: number; usedAt: number }[] = [];
    for (const name of names) {
      const key = name.endsWith(".json") ? name.slice(0, -5) : null;
      if (!key || !KEY.test(key)) continue;
      const info = await stat(this.archivePath(key)).catch(() => null);
      if (info) entries.push({ key, bytes: info.size, usedAt: info.mtimeMs });
    }
    entries.sort((a, b) => a.usedAt - b.usedAt);
    this.knownBytes = entries.reduce((sum, e) => sum + e.bytes, 0);
    this.knownEntries = entries.length;
    return entries;
  }

  /** Removes least recently used entries, never `keep`, until the cache fits. */
  private async evict(keep: string): Promise<void> {
    const entries = await this.scan();
    let total = this.knownBytes;
    for (const entry of entries) {
      if (total <= this.options.maxBytes) break;
      if (entry.key === keep) continue;
      try {
        await rm(this.descriptionPath(entry.key), { force: true });
        await rm(this.archivePath(entry.key), { force: true });
        total -= entry.bytes;
        this.counters.evictions++;
        this.options.log.info({ key: entry.key, bytes: entry.bytes }, "env.cache.evicted");
      } catch (error) {
        this.options.log.warn({ key: entry.key, err: errorMessage(error) }, "env.cache.evict.failed");
      }
    }
    await this.scan();
  }
}
