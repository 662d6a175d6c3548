/**
 * INDEX_REPOSITORY's full-text index over a repository whose text files add
 * up to more than one read from the store may hold: every text file is
 * indexed and found, binary and oversized files are left out.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { databaseTargets } from "../../../test/support/databases";
import { createRepo, git, tempDir } from "../../../test/support/git";
import { RepositoryIndexer } from "../src/repository/indexer";
import { RepositoryStore } from "../src/repository/repository-store";
import { systemClock } from "../src/utils/clock";

const targets = await databaseTargets();
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** 20 text files of 500 KB (10 MB in all), one binary file and one text file over the size limit. */
function repositoryOfLargeTextFiles(): string {
  const files: Record<string, string> = {};
  for (let i = 0; i < 20; i++) {
    const line = `file${i} holds the word marker${i} among filler words\n`;
    files[`text/file-${i}.txt`] = line.repeat(Math.floor(500_000 / line.length));
  }
  files["binary.bin"] = `\0${"x".repeat(1000)}`;
  files["too-large.txt"] = "oversized ".repeat(60_000);
  const repo = createRepo(files);
  dirs.push(repo);
  return repo;
}

describe.each(targets)("the full-text index on $name", (target) => {
  it("indexes every text file of a repository larger than one read, and finds words in all of them", async () => {
    const repo = repositoryOfLargeTextFiles();
    const storeDir = tempDir("umbra-index-store-");
    dirs.push(storeDir);
    const store = new RepositoryStore(join(storeDir, "repos"));
    const { baseCommitSha } = await store.prepareBase(repo, null);
    expect(baseCommitSha).toBe(git(repo, "rev-parse", "HEAD"));
    const database = await target.open();
    try {
      const indexer = new RepositoryIndexer(database.db, store, systemClock);
      expect(await indexer.indexCommit(repo, baseCommitSha)).toEqual({
        commitSha: baseCommitSha,
        fileCount: 20,
        indexed: true,
      });
      for (const i of [0, 19]) {
        const hits = await indexer.search(repo, baseCommitSha, `marker${i}`);
        expect(hits.map((hit) => hit.path)).toEqual([`text/file-${i}.txt`]);
      }
      expect(await indexer.search(repo, baseCommitSha, "oversized")).toEqual([]);
    } finally {
      await database.close();
    }
  }, 300_000);
});
