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
 * Staged trees: a restore that can rename files into its workspace (local
 * mode, same filesystem) takes `staged/<key>/`, the entry's archive already
 * unpacked, and moves its paths in — ~10,000 files of node_modules in a few
 * renames instead of a tar extraction whose cost grows with the files (and,
 * on some filesystems, with the deletions before it). The next staged tree
 * is unpacked in the background, off the restore's path. A staged tree counts
 * towards `maxBytes` as its archive's size, and is made only when it fits.
 * A restore that finds the next tree still being unpacked waits for it only
 * when more than half of it is done (judged by how long the last one took),
 * and only one restore waits: a fresh extraction is sooner than the rest of
 * one just begun, and restores arriving together must not queue behind it.
 *
 * Invariants:
 * - A staged tree is visible only when whole (unpacked under `tmp/`, marked
 *   with the archive it came from, renamed into place), is taken whole by
 *   one rename (one restore gets it, the others unpack the archive), and is
 *   used only if its mark matches the entry being restored.
 * - An entry is visible only when whole: the archive is written under
 *   `tmp/` and renamed into place, then its description; eviction removes
 *   the description first. A reader with the archive open keeps reading it
 *   even if it is evicted meanwhile.
 * - The cache never holds more than `maxBytes` after a store: the entry just
 *   stored is the last to go, and one larger than the whole cache is refused.
 * - Entries are files and directories only; several servers sharing
 *   DATA_DIR see each other's entries and staged trees (the byte count of
 *   each is its own last scan).
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { unpackFileInto } from "@repo/workspace";
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
/** The file in a staged tree naming the archive it was unpacked from. */
const STAGED_MARK = ".umbra-staged-from";

/** A staged tree taken by one restore: `dir` holds the entry's paths; release() removes what is left. */
export interface StagedTree {
  dir: string;
  release(): Promise<void>;
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
  /** Staged trees being unpacked by this process, by key; `claimed` once a restore waits for it. */
  private readonly staging = new Map<string, { run: Promise<void>; startedAt: number; claimed: boolean }>();
  /** How long the last staging of each key took, ms (the estimate of the next one). */
  private readonly stagingMs = new Map<string, number>();
  /** Ends the background unpacking at close(). */
  private readonly closing = new AbortController();

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
      await mkdir(join(this.options.dir, "staged"), { mode: 0o700 }).catch(() => undefined);
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
      // A tree staged from the archive this one replaced is of no use any more.
      await this.dropStaged(key);
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
    await this.dropStaged(key);
    await this.scan();
  }

  /**
   * Takes the staged tree of `entry` for one restore, or null when there is
   * none (or it was unpacked from an earlier archive of the same key). Waits
   * for the tree this process is unpacking only when that is sooner than
   * unpacking afresh, and only for one restore (see the module comment).
   */
  async takeStaged(entry: CachedEnvironment): Promise<StagedTree | null> {
    await this.init();
    const under = this.staging.get(entry.key);
    if (under) {
      const estimate = this.stagingMs.get(entry.key);
      const elapsed = this.options.clock.now().getTime() - under.startedAt;
      if (under.claimed || estimate === undefined || elapsed < estimate / 2) return null;
      under.claimed = true;
      await under.run;
    }
    const dir = join(this.tempDir, randomUUID());
    try {
      await rename(this.stagedPath(entry.key), dir);
    } catch {
      return null;
    }
    const release = () => rm(dir, { recursive: true, force: true });
    const mark = await readFile(join(dir, STAGED_MARK), "utf8").catch(() => null);
    if (mark !== stagedMark(entry)) {
      await release();
      return null;
    }
    return { dir, release };
  }

  /**
   * Unpacks the next staged tree of `entry` in the background, when there is
   * room for it and none is ready or being made. Never fails: a staging that
   * cannot be made is logged, and restores unpack the archive instead.
   * Resolves once this staging (or the one already under way) is over.
   */
  stage(entry: CachedEnvironment): Promise<void> {
    const running = this.staging.get(entry.key);
    if (running) return running.run;
    if (this.closing.signal.aborted) return Promise.resolve();
    const startedAt = this.options.clock.now().getTime();
    const run = this.unpackStaged(entry)
      .then((placed) => {
        if (placed) this.stagingMs.set(entry.key, this.options.clock.now().getTime() - startedAt);
      })
      .catch((error) => {
        if (!this.closing.signal.aborted) {
          this.options.log.warn({ key: entry.key, err: errorMessage(error) }, "env.cache.stage.failed");
        }
      })
      .finally(() => this.staging.delete(entry.key));
    this.staging.set(entry.key, { run, startedAt, claimed: false });
    return run;
  }

  /** Resolves once no staging is under way in this process. */
  async idle(): Promise<void> {
    while (this.staging.size > 0) await Promise.all([...this.staging.values()].map((staging) => staging.run));
  }

  /** Ends background staging and waits for it. */
  async close(): Promise<void> {
    this.closing.abort();
    await this.idle();
  }

  /** Unpacks a staged tree of `entry`; true once one this process unpacked is in place. */
  private async unpackStaged(entry: CachedEnvironment): Promise<boolean> {
    await this.init();
    const target = this.stagedPath(entry.key);
    if (await exists(target)) return false;
    if (this.knownBytes + entry.bytes > this.options.maxBytes) return false;
    const temp = join(this.tempDir, randomUUID());
    await mkdir(temp, { mode: 0o700 });
    try {
      const started = Date.now();
      await unpackFileInto(temp, entry.file, this.closing.signal);
      await writeFile(join(temp, STAGED_MARK), stagedMark(entry), { mode: 0o600 });
      // Another process may have staged it meanwhile: then this copy is dropped.
      const placed = await rename(temp, target).then(
        () => true,
        () => false,
      );
      if (placed) {
        this.knownBytes += entry.bytes;
        this.options.log.info({ key: entry.key, ms: Date.now() - started }, "env.cache.staged");
      }
      return placed;
    } finally {
      await rm(temp, { recursive: true, force: true });
    }
  }

  /** Removes the staged tree of `key`: out of sight in one rename first, so no restore takes half of one. */
  private async dropStaged(key: string): Promise<void> {
    const dir = join(this.tempDir, randomUUID());
    if (
      await rename(this.stagedPath(key), dir).then(
        () => true,
        () => false,
      )
    ) {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private stagedPath(key: string): string {
    return join(this.options.dir, "staged", key);
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
      if (!info) continue;
      const staged = await exists(this.stagedPath(key));
      entries.push({ key, bytes: staged ? 2 * info.size : info.size, usedAt: info.mtimeMs });
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
        await this.dropStaged(entry.key);
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

function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** What a staged tree of `entry` is marked with: its archive, as stored. */
function stagedMark(entry: CachedEnvironment): string {
  return `${entry.key} ${entry.createdAt} ${entry.bytes}`;
}
