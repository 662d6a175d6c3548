import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../../../test/support/git";
import { EnvironmentCache } from "../src/environments/environment-cache";
import { createLogger } from "../src/logger";
import { ManualClock } from "../src/utils/clock";

const MINUTE = 60_000;
const key = (name: string) => createHash("sha256").update(name).digest("hex");

describe("environment cache", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  function cache(maxBytes: number, clock = new ManualClock()) {
    const dir = tempDir("umbra-envcache-");
    dirs.push(dir);
    return { dir, clock, cache: new EnvironmentCache({ dir, maxBytes, clock, log: createLogger("silent") }) };
  }

  /** Stores an entry whose archive is `bytes` bytes of `fill`. */
  function store(c: EnvironmentCache, name: string, bytes: number, boundTo: string | null = null) {
    return c.store({ key: key(name), repoUrl: "/repo", paths: ["deps/"], boundTo, setupMs: 1000 }, async (file) => {
      writeFileSync(file, Buffer.alloc(bytes, name));
      return bytes;
    });
  }

  it("finds a stored entry, counts hits and misses, and reports its bytes", async () => {
    const { cache: c } = cache(10_000);
    expect(await c.lookup(key("a"), "/w")).toBeNull();
    const stored = await store(c, "a", 300);
    expect(stored?.bytes).toBe(300);
    const found = await c.lookup(key("a"), "/w");
    expect(found && readFileSync(found.file).length).toBe(300);
    expect(found?.paths).toEqual(["deps/"]);
    expect(c.counters).toMatchObject({ hits: 1, misses: 1, stores: 1, evictions: 0 });
    expect([c.bytes, c.entries]).toEqual([300, 1]);
  });

  it("evicts the least recently used entries to stay within its bound", async () => {
    const { cache: c, clock } = cache(1000);
    await store(c, "old", 400);
    clock.advance(MINUTE);
    await store(c, "used", 400);
    clock.advance(MINUTE);
    // "old" is used now, so "used" becomes the least recently used one.
    expect(await c.lookup(key("old"), "/w")).not.toBeNull();
    clock.advance(MINUTE);
    await store(c, "new", 400);
    expect(await c.lookup(key("used"), "/w")).toBeNull();
    expect(await c.lookup(key("old"), "/w")).not.toBeNull();
    expect(await c.lookup(key("new"), "/w")).not.toBeNull();
    expect(c.counters.evictions).toBe(1);
    expect(c.bytes).toBe(800);
  });

  it("refuses an entry larger than the whole cache and leaves nothing behind", async () => {
    const { cache: c, dir } = cache(100);
    expect(await store(c, "huge", 101)).toBeNull();
    expect(await c.lookup(key("huge"), "/w")).toBeNull();
    expect(readdirSync(dir).filter((name) => name !== "tmp" && name !== "staged")).toEqual([]);
    expect(readdirSync(join(dir, "staged"))).toEqual([]);
  });

  it("gives an entry that names its workspace's path only to that same path, one per path", async () => {
    const { cache: c } = cache(10_000);
    await store(c, "venv", 10, "/data/workspaces/one");
    expect(await c.lookup(key("venv"), "/data/workspaces/two")).toBeNull();
    await store(c, "venv", 20, "/data/workspaces/two");
    expect((await c.lookup(key("venv"), "/data/workspaces/one"))?.bytes).toBe(10);
    expect((await c.lookup(key("venv"), "/data/workspaces/two"))?.bytes).toBe(20);
    expect(c.entries).toBe(2);
  });

  it("drops an entry that failed to restore", async () => {
    const { cache: c, dir } = cache(10_000);
    await store(c, "broken", 10);
    await c.discard(key("broken"));
    expect(await c.lookup(key("broken"), "/w")).toBeNull();
    expect(existsSync(join(dir, `${key("broken")}.tar`))).toBe(false);
    expect(c.entries).toBe(0);
  });

  it("sees entries stored by an earlier process in the same directory", async () => {
    const first = cache(10_000);
    await store(first.cache, "kept", 50);
    const second = new EnvironmentCache({
      dir: first.dir,
      maxBytes: 10_000,
      clock: first.clock,
      log: createLogger("silent"),
    });
    await second.init();
    expect([second.entries, second.bytes]).toEqual([1, 50]);
    expect(await second.lookup(key("kept"), "/w")).not.toBeNull();
  });

  describe("staged trees", () => {
    /** Stores a real tar archive of `deps/` holding `files` files named after `name`. */
    function storeTree(c: EnvironmentCache, name: string, files = 3) {
      const source = tempDir("umbra-envcache-src-");
      dirs.push(source);
      mkdirSync(join(source, "deps", "nested"), { recursive: true });
      for (let i = 0; i < files; i++)
        writeFileSync(join(source, "deps", "nested", `${name}-${i}.js`), `${name} ${i}\n`);
      return c.store(
        { key: key(name), repoUrl: "/repo", paths: ["deps/"], boundTo: null, setupMs: 1000 },
        async (file) => {
          execFileSync("tar", ["-c", "-f", file, "-C", source, "./deps"]);
          return statSync(file).size;
        },
      );
    }

    it("unpacks an entry ahead of time and gives the tree to one restore only", async () => {
      const { cache: c } = cache(1_000_000);
      const entry = await storeTree(c, "a");
      expect(entry).not.toBeNull();
      await c.stage(entry!);
      // The staged tree counts as a second copy of the archive.
      expect(c.bytes).toBe(2 * entry!.bytes);
      const taken = await c.takeStaged(entry!);
      expect(taken).not.toBeNull();
      expect(readFileSync(join(taken!.dir, "deps", "nested", "a-2.js"), "utf8")).toBe("a 2\n");
      expect(await c.takeStaged(entry!)).toBeNull();
      await taken!.release();
      expect(existsSync(taken!.dir)).toBe(false);
    });

    it("never gives a tree unpacked from an archive the key no longer has", async () => {
      const { cache: c, clock } = cache(1_000_000);
      const first = await storeTree(c, "a");
      await c.stage(first!);
      clock.advance(MINUTE);
      const replaced = await storeTree(c, "a", 5);
      expect(await c.takeStaged(first!)).toBeNull();
      expect(await c.takeStaged(replaced!)).toBeNull();
      await c.stage(replaced!);
      const taken = await c.takeStaged(replaced!);
      expect(readdirSync(join(taken!.dir, "deps", "nested"))).toHaveLength(5);
      await taken!.release();
    });

    it("stages only when the second copy fits in the bound, and drops the tree with its entry", async () => {
      const tight = cache(15_000);
      const big = await storeTree(tight.cache, "big");
      expect(big!.bytes).toBeGreaterThan(7_500);
      await tight.cache.stage(big!);
      expect(await tight.cache.takeStaged(big!)).toBeNull();

      const roomy = cache(1_000_000);
      const entry = await storeTree(roomy.cache, "b");
      await roomy.cache.stage(entry!);
      await roomy.cache.discard(entry!.key);
      expect(readdirSync(join(roomy.dir, "staged"))).toEqual([]);
      expect(roomy.cache.bytes).toBe(0);
    });

    it("logs a staging that fails and leaves no partial tree", async () => {
      const { cache: c, dir } = cache(1_000_000);
      const notTar = await store(c, "garbage", 2048);
      await c.stage(notTar!);
      expect(await c.takeStaged(notTar!)).toBeNull();
      expect(readdirSync(join(dir, "staged"))).toEqual([]);
      const scratch = readdirSync(join(dir, "tmp")).flatMap((d) => readdirSync(join(dir, "tmp", d)));
      expect(scratch).toEqual([]);
    });

    it("waits for a tree being unpacked only once it is more than half done, and only for one restore", async () => {
      const { cache: c, clock } = cache(100_000_000);
      const entry = await storeTree(c, "w", 3000);
      // A first staging that took 1,000 ms of the clock: the estimate for the next one.
      const first = c.stage(entry!);
      clock.advance(1000);
      await first;
      await (await c.takeStaged(entry!))!.release();

      // The next staging has just begun: a restore unpacks afresh rather than wait for it.
      let staged = false;
      const second = c.stage(entry!).then(() => {
        staged = true;
      });
      expect(await c.takeStaged(entry!)).toBeNull();
      expect(staged).toBe(false);

      // More than half of the estimate gone: one restore waits and gets the tree; one arriving with it does not wait.
      clock.advance(600);
      const waiting = c.takeStaged(entry!);
      expect(await c.takeStaged(entry!)).toBeNull();
      expect(staged).toBe(false);
      const taken = await waiting;
      expect(taken).not.toBeNull();
      expect(readdirSync(join(taken!.dir, "deps", "nested"))).toHaveLength(3000);
      await taken!.release();
      await second;
    });

    it("ends a staging under way when closed", async () => {
      const { cache: c, dir } = cache(100_000_000);
      const entry = await storeTree(c, "many", 3000);
      const staging = c.stage(entry!);
      await c.close();
      await staging;
      expect(readdirSync(join(dir, "staged"))).toEqual([]);
      expect(await c.stage(entry!)).toBeUndefined();
      expect(readdirSync(join(dir, "staged"))).toEqual([]);
    });
  });
});
