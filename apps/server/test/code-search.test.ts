/**
 * search_code for a turn: a plain text search of the workspace until the
 * commit's index is complete (INDEX_REPOSITORY builds it in the background),
 * then the index. A real git repository as the workspace, the real local
 * executor, the real indexer on PGlite.
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { queryRows } from "@repo/db";
import { createLocalExecutor } from "@repo/workspace";
import { sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { databaseTargets } from "../../../test/support/databases";
import { createTask, turnEnded } from "../../../test/support/delivery";
import { createRepo, tempDir } from "../../../test/support/git";
import { eventually, readTask } from "../../../test/support/lifecycle";
import { startOpenAiStub } from "../../../test/support/openai-stub";
import { SERVER_START_MS, startTestServer } from "../../../test/support/server";
import { searchCode, textSearch } from "../src/repository/code-search";
import { RepositoryIndexer } from "../src/repository/indexer";
import { RepositoryStore } from "../src/repository/repository-store";
import { systemClock } from "../src/utils/clock";

const pglite = (await databaseTargets()).find((target) => target.name === "pglite")!;
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function workspace(files: Record<string, string>): string {
  const repo = createRepo(files);
  dirs.push(repo);
  return repo;
}

const FILES = {
  "src/both.ts": "// alpha\nconst beta = 1;\n",
  "src/alpha-only.ts": "export const alpha = 2;\n",
  "src/many.ts": "ALPHA and Beta\nalpha again\nbeta again\nnothing here\n",
  "node_modules/dep/index.js": "alpha beta\n",
};

describe("the text search search_code answers with before the index is built", () => {
  it("returns the files holding every word, case ignored, most matching lines first, with their lines", async () => {
    const executor = createLocalExecutor(workspace(FILES));
    const hits = await textSearch(executor, "Alpha, beta!", 10);
    expect(hits.map((hit) => hit.path)).toEqual(["src/many.ts", "src/both.ts"]);
    expect(hits[0]!.snippet).toBe("1: ALPHA and Beta\n2: alpha again\n3: beta again");
    expect(hits[0]!.rank).toBeGreaterThan(hits[1]!.rank);
    expect(await textSearch(executor, "alpha beta", 1)).toHaveLength(1);
  });

  it("reads a query of no words as no hits, and a query of regular-expression syntax as words", async () => {
    const executor = createLocalExecutor(workspace(FILES));
    expect(await textSearch(executor, "* . ?", 10)).toEqual([]);
    expect((await textSearch(executor, "(alpha|x)+", 10)).map((hit) => hit.path)).toEqual([
      "src/many.ts",
      "src/alpha-only.ts",
      "src/both.ts",
    ]);
  });
});

describe("search_code for a task", () => {
  it("answers from the workspace until the commit is indexed, then from the index of the prepared commit", async () => {
    const repo = workspace(FILES);
    const storeDir = tempDir("umbra-code-search-store-");
    dirs.push(storeDir);
    const store = new RepositoryStore(join(storeDir, "repos"));
    const sha = (await store.prepareBase(repo, null)).baseCommitSha;
    // A change the agent made in the workspace: the text search sees it, the prepared commit's index does not.
    writeFileSync(join(repo, "src/new.ts"), "const gamma = 'delta';\n");
    const executor = createLocalExecutor(repo);
    const database = await pglite.open();
    try {
      const indexer = new RepositoryIndexer(database.db, store, systemClock);
      const target = { repoUrl: repo, indexedCommitSha: sha };
      expect((await searchCode({ indexer, executor }, target, "gamma delta", 10)).map((h) => h.path)).toEqual([
        "src/new.ts",
      ]);
      // That search found the commit unindexed and started its index (under way, or done already: not started again).
      expect(["under way", "indexed"]).toContain(await indexer.indexInBackground(repo, sha));
      await indexer.settled();
      expect(await indexer.isIndexed(repo, sha)).toBe(true);
      expect(await searchCode({ indexer, executor }, target, "gamma delta", 10)).toEqual([]);
      // The index holds every committed text file; the text search skips node_modules.
      expect((await searchCode({ indexer, executor }, target, "alpha beta", 10)).map((h) => h.path).sort()).toEqual([
        "node_modules/dep/index.js",
        "src/both.ts",
        "src/many.ts",
      ]);
      // No commit to look up (never indexed): the text search.
      const unprepared = { repoUrl: repo, indexedCommitSha: null };
      expect((await searchCode({ indexer, executor }, unprepared, "gamma", 10)).map((h) => h.path)).toEqual([
        "src/new.ts",
      ]);
    } finally {
      await database.close();
    }
  }, 120_000);
});

describe("search_code in a task of the llm agent", () => {
  it(
    "finds a file in the first turn, and the commit is indexed once the workspace is ready",
    async () => {
      const model = await startOpenAiStub([
        { toolCalls: [{ name: "search_code", arguments: { query: "gamma delta" } }] },
        { text: "Found it." },
      ]);
      const t = await startTestServer({
        env: {
          AGENT: "llm",
          LLM_PROVIDER: "openai-compatible",
          LLM_MODEL: "search-model",
          LLM_BASE_URL: model.baseUrl,
        },
      });
      try {
        const repoUrl = workspace({ ...FILES, "src/found.ts": "const gamma = 'delta';\n" });
        const task = await createTask(t, { repoUrl, message: "Where is gamma set to delta?" });
        await turnEnded(t, task.id);
        // The tool's answer, as the model received it in its second request.
        expect(JSON.stringify(model.requests[1])).toContain("src/found.ts");
        const commit = (await readTask(t, task.id)).indexedCommitSha;
        expect(commit).toMatch(/^[0-9a-f]{40}$/);
        await eventually(async () => {
          const rows = await queryRows<{ n: number }>(
            t.server.database.db,
            sql`SELECT count(*)::int AS n FROM repo_index_commits WHERE commit_sha = ${commit}`,
          );
          return rows[0]!.n === 1;
        }, 60_000);
      } finally {
        await t.close();
        await model.close();
      }
    },
    SERVER_START_MS + 120_000,
  );
});
