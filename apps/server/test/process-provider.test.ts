import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { SidecarClient } from "@repo/workspace";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureSidecarBundle } from "../../sidecar/build";
import { findOnPath } from "../src/execution/vm/process/bubblewrap";
import { ProcessVmProvider } from "../src/execution/vm/process/process-provider";
import type { ProviderLogger } from "../src/execution/vm/types";
import { UMBRA_LABELS, UMBRA_MANAGED_BY, type VmHandle } from "../src/execution/vm/types";

const HAS_BWRAP = findOnPath("bwrap") !== null;
const REQUIRE_ALL = process.env.UMBRA_TEST_REQUIRE_ALL === "1";
const HOST_SECRETS = {
  OPENAI_API_KEY: "sk-host-secret-3b9c1f",
  API_TOKEN: "api-token-host-secret-77aa",
  DATABASE_URL: "postgres://user:db-host-secret-5511@db/umbra",
};

interface LogLine {
  level: "info" | "warn" | "error";
  fields: object;
  message?: string;
}

function recordingLogger(lines: LogLine[]): ProviderLogger {
  const logger: ProviderLogger = {
    info: (fields, message) => lines.push({ level: "info", fields, message }),
    warn: (fields, message) => lines.push({ level: "warn", fields, message }),
    error: (fields, message) => lines.push({ level: "error", fields, message }),
    child: () => logger,
  };
  return logger;
}

/** True when `pid` no longer runs: no /proc entry, or only a zombie waiting to be reaped. */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.charAt(stat.lastIndexOf(")") + 2);
    return state === "Z" || state === "X";
  } catch {
    return !existsSync(`/proc/${pid}`);
  }
}

let bundlePath: string;
let dataDir: string;
const startedPids: number[] = [];
const savedEnv: Record<string, string | undefined> = {};

beforeAll(async () => {
  bundlePath = await ensureSidecarBundle();
  dataDir = await mkdtemp(join(tmpdir(), "umbra-process-provider-"));
  for (const [name, value] of Object.entries(HOST_SECRETS)) {
    savedEnv[name] = process.env[name];
    process.env[name] = value;
  }
});

afterAll(async () => {
  for (const [name, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  for (const pid of startedPids) expect(processGone(pid), `sandbox process ${pid} leaked`).toBe(true);
  await rm(dataDir, { recursive: true, force: true });
});

function newTaskId(): string {
  return `task-${randomBytes(6).toString("hex")}`;
}

async function recordOf(taskId: string): Promise<{ pid: number; launcherPid: number }> {
  return JSON.parse(await readFile(join(dataDir, "vms", taskId, "vm.json"), "utf8"));
}

async function run(client: SidecarClient, command: string) {
  let stdout = "";
  let stderr = "";
  const result = await client.runCommand(command, {
    onOutput: (stream, text) => {
      if (stream === "stdout") stdout += text;
      else stderr += text;
    },
  });
  return { ...result, stdout, stderr };
}

const modes = [
  { name: "under bubblewrap", useBubblewrap: true, available: HAS_BWRAP },
  { name: "as a plain process", useBubblewrap: false, available: true },
];

describe.each(modes)("the process VM provider $name", ({ useBubblewrap, available }) => {
  const logs: LogLine[] = [];
  const created: Array<{ provider: ProcessVmProvider; handle: VmHandle }> = [];

  function provider() {
    return new ProcessVmProvider({
      dataDir,
      sidecarBundlePath: bundlePath,
      useBubblewrap,
      logger: recordingLogger(logs),
    });
  }

  async function create(vmProvider = provider(), labels: Record<string, string> = {}) {
    const taskId = newTaskId();
    const token = randomBytes(24).toString("hex");
    const handle = await vmProvider.create({
      taskId,
      token,
      labels: { [UMBRA_LABELS.taskId]: taskId, [UMBRA_LABELS.managedBy]: UMBRA_MANAGED_BY, ...labels },
    });
    created.push({ provider: vmProvider, handle });
    const record = await recordOf(taskId);
    startedPids.push(record.pid, record.launcherPid);
    return { taskId, token, handle, record, client: new SidecarClient({ endpoint: handle.endpoint, token }) };
  }

  afterEach(async () => {
    for (const { provider: vmProvider, handle } of created.splice(0)) await vmProvider.destroy(handle.externalId);
  });

  it.skipIf(!available)("creates a sandbox whose sidecar answers on a unix socket in its directory", async () => {
    const { taskId, client, handle } = await create();
    expect(handle).toMatchObject({ provider: "process", externalId: taskId });
    expect(handle.endpoint).toBe(`unix:${join(dataDir, "vms", taskId, "sockets", "sidecar.sock")}`);
    expect(await client.health()).toMatchObject({ ok: true, workspace: join(dataDir, "vms", taskId, "workspace") });
    expect(await provider().status(taskId)).toEqual({ state: "running" });
  });

  it.skipIf(!available)("keeps the server's secrets out of the sandbox", async () => {
    const { token, client, record } = await create();
    const { stdout } = await run(client, "env");
    const sidecarEnv = readFileSync(`/proc/${record.pid}/environ`, "utf8");
    for (const secret of Object.values(HOST_SECRETS)) {
      expect(stdout).not.toContain(secret);
      expect(sidecarEnv).not.toContain(secret);
    }
    expect(stdout).not.toContain(token);
    expect(readFileSync(`/proc/${record.pid}/cmdline`, "utf8")).not.toContain(token);
  });

  it.skipIf(!available)("destroy kills the sandbox and removes its directory, and may be repeated", async () => {
    const vmProvider = provider();
    const { taskId, record } = await create(vmProvider);
    await vmProvider.destroy(taskId);
    expect(processGone(record.pid)).toBe(true);
    expect(existsSync(join(dataDir, "vms", taskId))).toBe(false);
    expect(await vmProvider.status(taskId)).toEqual({ state: "missing" });
    await vmProvider.destroy(taskId);
    await vmProvider.destroy("never-created");
  });

  it.skipIf(!available)("a fresh provider over the same data directory finds and destroys a sandbox", async () => {
    const { taskId, record } = await create(provider(), { team: "blue" });
    const later = provider();
    const found = await later.list({ [UMBRA_LABELS.taskId]: taskId });
    expect(found).toEqual([
      {
        externalId: taskId,
        labels: expect.objectContaining({ team: "blue" }),
        endpoint: `unix:${join(dataDir, "vms", taskId, "sockets", "sidecar.sock")}`,
      },
    ]);
    expect(await later.list({ [UMBRA_LABELS.taskId]: taskId, team: "red" })).toEqual([]);
    expect((await later.list({ [UMBRA_LABELS.managedBy]: UMBRA_MANAGED_BY })).map((l) => l.externalId)).toContain(
      taskId,
    );
    await later.destroy(taskId);
    expect(processGone(record.pid)).toBe(true);
  });

  it.skipIf(!available)("reports a sandbox whose sidecar died as exited, and leaves it out of list()", async () => {
    const vmProvider = provider();
    const { taskId, record } = await create(vmProvider);
    process.kill(-record.pid, "SIGKILL");
    try {
      process.kill(record.pid, "SIGKILL");
    } catch {
      // already gone with its group
    }
    await expect.poll(() => processGone(record.pid), { timeout: 10_000, interval: 20 }).toBe(true);
    expect((await vmProvider.status(taskId)).state).toBe("exited");
    expect(await vmProvider.list({ [UMBRA_LABELS.taskId]: taskId })).toEqual([]);
  });

  it.skipIf(!available)("refuses a second sandbox for a task whose sandbox runs", async () => {
    const vmProvider = provider();
    const { taskId } = await create(vmProvider);
    await expect(vmProvider.create({ taskId, token: "x".repeat(32), labels: {} })).rejects.toThrow(/already running/);
  });

  it.skipIf(!available)("refuses a task id that could name another directory", async () => {
    await expect(provider().create({ taskId: "../escape", token: "x".repeat(32), labels: {} })).rejects.toThrow(
      /invalid task id/,
    );
  });

  if (!useBubblewrap) {
    it("warns loudly that sandboxes are not confined", () => {
      provider();
      expect(logs.some((line) => line.level === "warn" && /UNSANDBOXED/.test(line.message ?? ""))).toBe(true);
    });
  }
});

describe("bubblewrap confinement", () => {
  it.runIf(REQUIRE_ALL)("is available when every test must run", () => {
    expect(HAS_BWRAP, "bwrap is not on PATH but UMBRA_TEST_REQUIRE_ALL=1").toBe(true);
  });

  describe.skipIf(!HAS_BWRAP)("a sandboxed command", () => {
    let vmProvider: ProcessVmProvider;
    let client: SidecarClient;
    let taskId: string;
    let sandboxPid: number;

    beforeAll(async () => {
      vmProvider = new ProcessVmProvider({
        dataDir,
        sidecarBundlePath: bundlePath,
        useBubblewrap: true,
        logger: recordingLogger([]),
      });
      taskId = newTaskId();
      const token = randomBytes(24).toString("hex");
      const handle = await vmProvider.create({ taskId, token, labels: { [UMBRA_LABELS.taskId]: taskId } });
      client = new SidecarClient({ endpoint: handle.endpoint, token });
      sandboxPid = (await recordOf(taskId)).pid;
      startedPids.push(sandboxPid);
    });

    afterAll(async () => {
      await vmProvider.destroy(taskId);
    });

    it("can write its workspace but nowhere else on the host", async () => {
      const { stdout } = await run(client, "touch inside.txt && pwd");
      expect(existsSync(join(stdout.trim(), "inside.txt"))).toBe(true);
      const refused = [
        join(homedir(), `umbra-escape-${taskId}`),
        "/etc/umbra-escape",
        "/usr/umbra-escape",
        "/umbra-escape",
      ];
      for (const path of refused) {
        expect((await run(client, `touch '${path}'`)).exitCode, `touch ${path} should fail`).not.toBe(0);
        expect(existsSync(path)).toBe(false);
      }
      // The data directory sits under /tmp here, which inside is the sandbox's own tmpfs: the write
      // may succeed there, but must not reach the host's data directory.
      await run(client, `touch '${join(dataDir, "escape.txt")}' '${join(dataDir, "vms", "escape.txt")}'`);
      expect(existsSync(join(dataDir, "escape.txt"))).toBe(false);
      expect(existsSync(join(dataDir, "vms", "escape.txt"))).toBe(false);
    });

    it("has a private /tmp", async () => {
      const hostMarker = join(tmpdir(), `umbra-host-marker-${taskId}`);
      await writeFile(hostMarker, "host\n");
      try {
        expect((await run(client, `test -e '${hostMarker}'`)).exitCode).not.toBe(0);
        expect((await run(client, `echo sandbox > /tmp/sandbox-${taskId}`)).exitCode).toBe(0);
        expect(existsSync(`/tmp/sandbox-${taskId}`)).toBe(false);
      } finally {
        await rm(hostMarker, { force: true });
      }
    });

    it("cannot see the host's processes", async () => {
      const { stdout } = await run(client, 'for p in /proc/[0-9]*; do echo "$(basename $p) $(cat $p/comm)"; done');
      const processes = stdout.trim().split("\n");
      const names = new Set(processes.map((line) => line.split(" ")[1]));
      // The agent's own sandbox: its init (bwrap, sleep) and this command; not even the sidecar (node).
      expect([...names].every((name) => ["bwrap", "sleep", "sh", "cat", "basename"].includes(name ?? ""))).toBe(true);
      expect(processes.length).toBeLessThan(10);
      expect(stdout).not.toContain(String(process.pid));
    });

    it("cannot see the server's secrets", async () => {
      const { stdout } = await run(client, "env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'");
      for (const secret of Object.values(HOST_SECRETS)) expect(stdout).not.toContain(secret);
    });

    it("takes every process inside with it when destroyed", async () => {
      const { stdout } = await run(client, "sleep 300 > /dev/null 2>&1 & echo $!");
      expect(stdout.trim()).toMatch(/^\d+$/);
      const hostPids = readFileSync(`/proc/${sandboxPid}/task/${sandboxPid}/children`, "utf8").trim().split(/\s+/);
      expect(hostPids.length).toBeGreaterThan(0);
      await vmProvider.destroy(taskId);
      expect(processGone(sandboxPid)).toBe(true);
      await expect
        .poll(() => hostPids.every((pid) => processGone(Number(pid))), { timeout: 2000, interval: 20 })
        .toBe(true);
    });
  });
});
