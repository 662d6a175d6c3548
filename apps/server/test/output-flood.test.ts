/**
 * An agent that floods its output and one that prints NUL bytes, against the
 * real server as a child process (`main.ts`), on the embedded database and on
 * Postgres, probed from this process (test/support/output-flood.ts):
 * - a 200 MB flood (`head -c 200000000 /dev/urandom | base64`, 270 MB of
 *   text) leaves GET /api/health answering throughout (a hard failure only
 *   beyond 1 s; the 100 ms target is measured by the `output-flood`
 *   benchmark), the server's memory bounded, and the turn ends COMPLETED;
 * - the message keeps the first 10 MiB and ends with the count of what it
 *   left out; the task's log keeps the output up to its own 100 MiB cap and
 *   says how much it left out; GET /api/tasks/:id/log serves that file;
 * - NUL and other control bytes in the output are stored, and nothing after
 *   them is lost.
 * In remote mode the same flood crosses the sidecar's exec stream, which
 * slows the command down when the server reads slower than it writes.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { MessageDto } from "@repo/types";
import { afterAll, describe, expect, it } from "vitest";
import { type ScratchPostgres, serverDatabaseTargets } from "../../../test/support/databases";
import { DataDirs } from "../../../test/support/faults";
import { createRepo } from "../../../test/support/git";
import {
  base64OutputBytes,
  floodTask,
  loopHolds,
  loopProbeEnv,
  loopProbeFile,
} from "../../../test/support/output-flood";
import { reliabilityCase } from "../../../test/support/reliability";
import { settleProcessesUnder, spawnServer } from "../../../test/support/server-process";

const FILE = "output-flood.test.ts";
const MIB = 1024 * 1024;
const FLOOD_BYTES = 200_000_000;

const dataDirs = new DataDirs();
afterAll(() => dataDirs.cleanUp());

const targets = await serverDatabaseTargets();

describe.each(targets)("an agent flooding its output, on $name", (target) => {
  let scratch: ScratchPostgres | null = null;
  afterAll(async () => {
    await scratch?.drop();
  });

  async function start(prefix: string) {
    scratch ??= await target.database();
    const dataDir = dataDirs.create(prefix);
    // A fresh embedded database takes a while to create on a busy machine.
    const server = await spawnServer({
      dataDir,
      healthyTimeoutMs: 180_000,
      env: { ...loopProbeEnv(loopProbeFile(dataDir)), ...(scratch ? { DATABASE_URL: scratch.url } : {}) },
    });
    return { dataDir, server };
  }

  it("a 200 MB flood: health keeps answering, memory stays bounded, the message is capped, the log keeps the capped full output, the turn ends", async () => {
    await reliabilityCase(
      "hostile",
      FILE,
      `${target.name}: the agent prints 270 MB (head -c ${FLOOD_BYTES} /dev/urandom | base64)`,
      async (observe) => {
        const { dataDir, server } = await start("umbra-flood-");
        const flood = await floodTask(server, createRepo(), FLOOD_BYTES);
        const sorted = [...flood.healthMs].sort((a, b) => a - b);
        const worst = sorted.at(-1)!;
        observe(
          `turn ${flood.status} after ${(flood.turnMs / 1000).toFixed(1)} s; /api/health answered ${sorted.length} times during it, median ${sorted[sorted.length >> 1]!.toFixed(0)} ms, worst ${worst.toFixed(0)} ms; RSS ${flood.rssBeforeMb.toFixed(0)} MB before, ${flood.rssMaxMb.toFixed(0)} MB at most`,
        );
        expect(flood.status).toBe("COMPLETED");
        expect(sorted.length).toBeGreaterThan(10);
        expect(worst).toBeLessThan(1000);
        // The output is 270 MB: keeping any sizeable part of it in memory would show.
        expect(flood.rssMaxMb - flood.rssBeforeMb).toBeLessThan(200);

        const total = base64OutputBytes(FLOOD_BYTES);
        const { messages } = (
          await server.api<{ messages: MessageDto[] }>("GET", `/api/tasks/${flood.taskId}/messages`)
        ).body;
        const output = messages.find((m) => m.metadata?.kind === "command-output")!;
        const stored = output.content.slice(0, 10 * MIB);
        const lines = stored.split("\n");
        expect(lines.slice(0, -1).every((line) => /^[A-Za-z0-9+/]{76}$/.test(line))).toBe(true);
        expect(lines.at(-1)).toMatch(/^[A-Za-z0-9+/]{0,76}$/);
        expect(output.content.slice(10 * MIB)).toBe(
          `\n… ${total - 10 * MIB} bytes omitted; the task's log has the full output (GET /api/tasks/${flood.taskId}/log)`,
        );
        observe(`message: the first 10 MiB, then "… ${total - 10 * MIB} bytes omitted"`);

        const path = join(dataDir, "logs", `${flood.taskId}.log`);
        const log = readFileSync(path);
        const heading = log.indexOf("\n", 1) + 1;
        expect(log.subarray(0, heading).toString()).toMatch(
          /^\n\[[^\]]+\] command output \(message [0-9a-f-]{36}\)\n$/,
        );
        expect(log.subarray(heading, heading + 10 * MIB).toString()).toBe(stored);
        const notice = `\n… ${total - (100 * MIB - heading)} bytes omitted: this log reached its limit of ${100 * MIB} bytes\n`;
        expect(log.subarray(100 * MIB).toString()).toBe(notice);
        const served = await fetch(`${server.url}/api/tasks/${flood.taskId}/log`, { method: "HEAD" });
        expect([served.status, served.headers.get("content-length")]).toEqual([200, String(statSync(path).size)]);
        observe(`log: ${100 * MIB} bytes of output, then its notice of what the cap left out`);

        expect(await server.stop()).toBe(0);
        expect(await settleProcessesUnder(dataDir)).toEqual([]);
        const held = Math.max(...loopHolds(loopProbeFile(dataDir), flood.startedAt, flood.endedAt));
        observe(
          `the server's own work held its event loop ${held.toFixed(0)} ms at most (the rest of a late answer is the machine)`,
        );
      },
    );
  }, 300_000);

  it("NUL and control bytes in the output are stored and the rest of the turn's output is kept", async () => {
    await reliabilityCase(
      "hostile",
      FILE,
      `${target.name}: the agent prints NUL, control characters and bytes that are not UTF-8`,
      async (observe) => {
        const { dataDir, server } = await start("umbra-nul-");
        const created = await server.api<{ task: { id: string } }>("POST", "/api/tasks", {
          repoUrl: createRepo(),
          message: "printf 'before\\0after\\n'; printf 'bell\\a esc\\033[1m \\377\\376 end\\n'; echo last line",
        });
        expect(created.status).toBe(201);
        const id = created.body.task.id;
        let task = { status: "INITIALIZING" };
        while (task.status === "INITIALIZING" || task.status === "RUNNING") {
          await new Promise((resolve) => setTimeout(resolve, 50));
          task = (await server.api<{ task: { status: string } }>("GET", `/api/tasks/${id}`)).body.task;
        }
        expect(task.status).toBe("COMPLETED");
        const { messages } = (await server.api<{ messages: MessageDto[] }>("GET", `/api/tasks/${id}/messages`)).body;
        const output = messages.find((m) => m.metadata?.kind === "command-output")!;
        // NUL and the invalid bytes become U+FFFD; the bell and the escape sequence stay as they are.
        expect(output.content).toBe("before\uFFFDafter\nbell\u0007 esc\u001b[1m \uFFFD\uFFFD end\nlast line\n");
        const log = readFileSync(join(dataDir, "logs", `${id}.log`), "utf8");
        expect(log).toContain("before\u0000after\n");
        observe("task COMPLETED; the message holds every line, NUL stored as U+FFFD; the log keeps the NUL byte");
        expect(await server.stop()).toBe(0);
      },
    );
  }, 120_000);
});

describe("an agent flooding its output in remote mode (through the sidecar)", () => {
  it("keeps health answering and memory bounded, caps the message, and ends the turn", async () => {
    await reliabilityCase(
      "hostile",
      FILE,
      "remote mode: the agent prints 135 MB through the sidecar's exec stream",
      async (observe) => {
        const bytes = 100_000_000;
        const dataDir = dataDirs.create("umbra-flood-remote-");
        const server = await spawnServer({
          dataDir,
          healthyTimeoutMs: 180_000,
          env: { AGENT_MODE: "remote", ...loopProbeEnv(loopProbeFile(dataDir)) },
        });
        const flood = await floodTask(server, createRepo(), bytes);
        const worst = Math.max(...flood.healthMs);
        observe(
          `turn ${flood.status} after ${(flood.turnMs / 1000).toFixed(1)} s; worst /api/health ${worst.toFixed(0)} ms over ${flood.healthMs.length} probes; RSS ${flood.rssBeforeMb.toFixed(0)} → ${flood.rssMaxMb.toFixed(0)} MB`,
        );
        expect(flood.status).toBe("COMPLETED");
        expect(worst).toBeLessThan(1000);
        expect(flood.rssMaxMb - flood.rssBeforeMb).toBeLessThan(200);
        const { messages } = (
          await server.api<{ messages: MessageDto[] }>("GET", `/api/tasks/${flood.taskId}/messages`)
        ).body;
        const output = messages.find((m) => m.metadata?.kind === "command-output")!;
        expect(output.content.slice(10 * MIB)).toBe(
          `\n… ${base64OutputBytes(bytes) - 10 * MIB} bytes omitted; the task's log has the full output (GET /api/tasks/${flood.taskId}/log)`,
        );
        expect((await server.api("POST", `/api/tasks/${flood.taskId}/archive`)).status).toBe(200);
        expect(await server.stop()).toBe(0);
        expect(await settleProcessesUnder(dataDir)).toEqual([]);
        const held = Math.max(...loopHolds(loopProbeFile(dataDir), flood.startedAt, flood.endedAt));
        observe(`the server's own work held its event loop ${held.toFixed(0)} ms at most`);
      },
    );
  }, 300_000);
});
