/**
 * A turn that writes a 1 GiB file of random bytes in remote mode, on the
 * embedded database and on Postgres, against the real server as a child
 * process, probed from this process (test/support/output-flood.ts): the save
 * commits the file in the sandbox and streams it into the repository store,
 * git process to HTTP body to git process, so
 * - GET /api/health keeps answering throughout (a hard failure only beyond
 *   1 s; the 100 ms target is the `save-memory` benchmark's);
 * - the server's memory does not follow the file's size;
 * - the turn ends COMPLETED and the task branch in the store holds the whole
 *   file.
 */
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type ScratchPostgres, serverDatabaseTargets } from "../../../test/support/databases";
import { DataDirs, waitForTaskStatus } from "../../../test/support/faults";
import { createRepo, git } from "../../../test/support/git";
import { loopHolds, loopProbeEnv, loopProbeFile, measureTurn } from "../../../test/support/output-flood";
import { reliabilityCase } from "../../../test/support/reliability";
import { settleProcessesUnder, spawnServer } from "../../../test/support/server-process";
import { RepositoryStore } from "../src/repository/repository-store";

const FILE = "large-file-save.test.ts";
const FILE_BYTES = 1024 * 1024 * 1024;

const dataDirs = new DataDirs();
afterAll(() => dataDirs.cleanUp());

const targets = await serverDatabaseTargets();

describe.each(targets)("saving a 1 GiB file in remote mode, on $name", (target) => {
  let scratch: ScratchPostgres | null = null;
  afterAll(async () => {
    await scratch?.drop();
  });

  it("keeps health answering and memory bounded, and the task branch holds the whole file", async () => {
    await reliabilityCase(
      "hostile",
      FILE,
      `${target.name}: a turn writes 1 GiB of random bytes in its sandbox, which the save streams into the store`,
      async (observe) => {
        scratch = await target.database();
        const dataDir = dataDirs.create("umbra-bigfile-");
        const server = await spawnServer({
          dataDir,
          healthyTimeoutMs: 180_000,
          env: {
            AGENT_MODE: "remote",
            ...loopProbeEnv(loopProbeFile(dataDir)),
            ...(scratch ? { DATABASE_URL: scratch.url } : {}),
          },
        });
        const repo = createRepo();
        // No delivery: the push of the commit to the origin is not what this measures.
        const created = await server.api<{ task: { id: string } }>("POST", "/api/tasks", {
          repoUrl: repo,
          message: "true",
          delivery: "none",
        });
        expect(created.status).toBe(201);
        const taskId = created.body.task.id;
        await waitForTaskStatus(server, taskId, "COMPLETED", 120_000);

        const turn = await measureTurn(
          server,
          async () => {
            const message = `head -c ${FILE_BYTES} /dev/urandom > random.bin`;
            expect((await server.api("POST", `/api/tasks/${taskId}/messages`, { message })).status).toBe(202);
            return taskId;
          },
          { timeoutMs: 600_000 },
        );
        const worst = Math.max(...turn.healthMs);
        observe(
          `turn ${turn.status} after ${(turn.turnMs / 1000).toFixed(1)} s (the save included); worst /api/health ${worst.toFixed(0)} ms over ${turn.healthMs.length} probes; RSS ${turn.rssBeforeMb.toFixed(0)} → ${turn.rssMaxMb.toFixed(0)} MB`,
        );
        expect(turn.status).toBe("COMPLETED");
        expect(turn.healthMs.length).toBeGreaterThan(10);
        expect(worst).toBeLessThan(1000);
        // A save holding any sizeable part of the file in the server's memory would show here.
        expect(turn.rssMaxMb - turn.rssBeforeMb).toBeLessThan(200);

        const mirror = new RepositoryStore(join(dataDir, "repos")).mirrorPath(repo);
        expect(git(mirror, "cat-file", "-s", `umbra/${taskId}:random.bin`)).toBe(String(FILE_BYTES));
        observe("the task branch in the store holds the whole file");

        expect((await server.api("DELETE", `/api/tasks/${taskId}`)).status).toBe(204);
        expect(await server.stop()).toBe(0);
        expect(await settleProcessesUnder(dataDir)).toEqual([]);
        const held = Math.max(...loopHolds(loopProbeFile(dataDir), turn.startedAt, turn.endedAt));
        observe(`the server's own work held its event loop ${held.toFixed(0)} ms at most`);
      },
    );
  }, 600_000);
});
