/**
 * Containment through the front door: a real server in remote mode (process
 * provider, shell agent), whose task messages are the attacks. Each attack's
 * task must end FAILED (or, for the allowed model endpoint, COMPLETED) with
 * nothing of the host in its saved work, while a concurrent task completes
 * untouched and a limit that was hit is named in the task's error.
 *
 * The network policy and every other protection are the defaults; only the
 * resource limits are small (256 MB, 128 processes, 256 MB of disk), so that
 * exhausting them stays cheap on a shared machine.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import type { TaskDto } from "@repo/types";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LoopbackService, startLoopbackService } from "../../../test/support/containment";
import { createRepo } from "../../../test/support/git";
import { eventually } from "../../../test/support/lifecycle";
import { startTestServer, type TestServer } from "../../../test/support/server";
import { findOnPath } from "../src/execution/vm/process/bubblewrap";

const HAS_BWRAP = findOnPath("bwrap") !== null;
const REQUIRE_ALL = process.env.UMBRA_TEST_REQUIRE_ALL === "1";
const IS_ROOT = process.getuid?.() === 0;
type TaskBody = { task: TaskDto };
type DiffBody = { patch: string; files: { path: string }[] };

describe("sandbox containment through task messages", () => {
  it.runIf(REQUIRE_ALL)("has bubblewrap and root when every test must run", () => {
    expect(HAS_BWRAP && IS_ROOT, "bwrap and root are required with UMBRA_TEST_REQUIRE_ALL=1").toBe(true);
  });

  describe.skipIf(!HAS_BWRAP || !IS_ROOT)("a remote server with the default network policy", () => {
    let t: TestServer;
    let model: LoopbackService;
    const escapePath = `/etc/umbra-escape-${randomBytes(4).toString("hex")}`;
    const tasks = new Map<string, TaskDto>();

    async function finished(id: string): Promise<TaskDto> {
      return eventually(async () => {
        const { body } = await t.api<TaskBody>("GET", `/api/tasks/${id}`);
        return ["COMPLETED", "FAILED"].includes(body.task.status) ? body.task : undefined;
      }, 90_000);
    }

    async function patchOf(id: string): Promise<string> {
      return (await t.api<DiffBody>("GET", `/api/tasks/${id}/diff`)).body.patch;
    }

    beforeAll(async () => {
      model = await startLoopbackService({ data: [{ id: "fake-model" }] });
      t = await startTestServer({
        env: {
          AGENT_MODE: "remote",
          ANTHROPIC_BASE_URL: `http://127.0.0.1:${model.port}`,
          SANDBOX_MEMORY_MB: "256",
          SANDBOX_PIDS: "128",
          SANDBOX_DISK_MB: "256",
          // Nine sandboxes live at once; the default cap (8 on two cores) would evict a finished one early.
          MAX_ACTIVE_WORKSPACES: "16",
        },
      });
      const port = new URL(t.url).port;
      // In waves, each started once the one before runs: a shared two-core machine starting nine
      // sandboxes at once would time out their start, which is not what is under test here.
      const waves: Record<string, string>[] = [
        {
          victim: "sleep 25 && echo survived > survived.txt",
          model: `curl -sf http://127.0.0.1:${model.port}/v1/models > model.json`,
          api: `curl -sf --noproxy '' http://127.0.0.1:${port}/api/tasks > tasks.json; curl -sf http://127.0.0.1:${port}/api/tasks >> tasks.json`,
        },
        {
          loot: "cat /etc/shadow /proc/[0-9]*/environ > loot.txt",
          escape: `mount -o remount,rw /etc && touch ${escapePath}`,
          postgres: `python3 -c "import socket; socket.create_connection(('127.0.0.1', 5432), 5)"`,
        },
        {
          memory: `python3 -c "b = b'x' * (512 * 1024 * 1024)"`,
          forkBomb: "bomb() { bomb | bomb & }; bomb; sleep 30",
          disk: "dd if=/dev/zero of=/tmp/fill bs=1M count=400",
        },
      ];
      for (const wave of waves) {
        const created = await Promise.all(
          Object.entries(wave).map(async ([name, message]) => {
            const response = await t.api<TaskBody>("POST", "/api/tasks", { repoUrl: createRepo(), message });
            expect(response.status).toBe(201);
            tasks.set(name, response.body.task);
            return response.body.task.id;
          }),
        );
        for (const id of created) {
          let last: TaskDto | undefined;
          await eventually(async () => {
            last = (await t.api<TaskBody>("GET", `/api/tasks/${id}`)).body.task;
            return last.status !== "INITIALIZING";
          }, 90_000).catch((error: Error) => {
            throw new Error(`${error.message}: task ${id} still ${last?.status}/${last?.initStatus}`);
          });
        }
      }
      for (const [name, task] of tasks) tasks.set(name, await finished(task.id));
    }, 420_000);

    afterAll(async () => {
      await t?.close();
      await model?.close();
    }, 60_000);

    it("lets a concurrent task finish untouched", async () => {
      const victim = tasks.get("victim")!;
      expect(victim.status).toBe("COMPLETED");
      expect(await patchOf(victim.id)).toContain("+survived");
    });

    it("reaches the configured model endpoint on host loopback", async () => {
      const task = tasks.get("model")!;
      expect(task.status, task.errorMessage ?? "").toBe("COMPLETED");
      expect(await patchOf(task.id)).toContain('"fake-model"');
    });

    it("cannot reach the Umbra API, directly or through the proxy, and the task says what was blocked", async () => {
      const task = tasks.get("api")!;
      expect(task.status).toBe("FAILED");
      const patch = await patchOf(task.id);
      for (const other of tasks.values()) expect(patch).not.toContain(other.id);
      const port = new URL(t.url).port;
      const { body } = await t.api<{ messages: { role: string; content: string }[] }>(
        "GET",
        `/api/tasks/${task.id}/messages`,
      );
      const notices = body.messages.filter((m) => m.role === "system" && m.content.startsWith("Network: blocked"));
      expect(notices.map((m) => m.content)).toEqual([expect.stringContaining(`127.0.0.1:${port}`)]);
    });

    it("cannot read /etc/shadow or the environment of any process", async () => {
      const task = tasks.get("loot")!;
      expect(task.status).toBe("FAILED");
      const patch = await patchOf(task.id);
      expect(patch).not.toContain("root:");
      expect(patch).not.toMatch(/SIDECAR_TOKEN|DATABASE_URL|ANTHROPIC_BASE_URL/);
    });

    it("cannot remount the host's /etc or write into it", async () => {
      expect(tasks.get("escape")!.status).toBe("FAILED");
      expect(existsSync(escapePath)).toBe(false);
    });

    it("cannot connect to Postgres on host loopback", () => {
      expect(tasks.get("postgres")!.status).toBe("FAILED");
    });

    it("names the memory limit when a command exceeds it", () => {
      const task = tasks.get("memory")!;
      expect(task.status).toBe("FAILED");
      expect(task.errorMessage).toContain("killed: memory limit 256 MB reached");
    });

    it("names the process limit when a fork bomb hits it", () => {
      const task = tasks.get("forkBomb")!;
      expect(task.status).toBe("FAILED");
      expect(task.errorMessage).toContain("killed: process limit 128 reached");
    });

    it("names the disk limit when /tmp fills the sandbox's volume", () => {
      const task = tasks.get("disk")!;
      expect(task.status).toBe("FAILED");
      expect(task.errorMessage).toContain("disk limit 256 MB reached");
    });

    it("still answers and runs new tasks after every attack", async () => {
      expect((await t.api("GET", "/api/health")).status).toBe(200);
      const after = await t.api<TaskBody>("POST", "/api/tasks", {
        repoUrl: createRepo(),
        message: "echo fine > ok.txt",
      });
      expect((await finished(after.body.task.id)).status).toBe("COMPLETED");
    }, 120_000);
  });
});
