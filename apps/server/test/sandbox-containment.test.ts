/**
 * Containment: what an attacker who controls the commands of a sandbox can
 * do — the message is the attacker. Real bubblewrap sandboxes from the
 * process provider, driven through their sidecars (SidecarClient over the
 * unix socket). A second sandbox runs a heartbeat the whole time: after every
 * attack the attacker's sidecar still answers, the victim still beats, and a
 * limit that was hit is reported.
 *
 * Network attacks are connection attempts only: inside, the sandbox's network
 * namespace has nothing but its own loopback, and the egress proxy on the
 * host refuses before it connects or resolves anything (its resolver here
 * fails every lookup and records it). Nothing leaves 127.0.0.1.
 *
 * The limits are set small (256 MB, 128 processes, 128 MB of disk) so the
 * attacks that exhaust them stay cheap on a shared machine.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SidecarClient } from "@repo/workspace";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  heartbeat,
  heartbeatCommand,
  type LoopbackService,
  processStatus,
  runIn,
  startLoopbackService,
} from "../../../test/support/containment";
import { eventually } from "../../../test/support/lifecycle";
import { processEnvironment, processRunning, sidecarPid } from "../../../test/support/sandbox-probe";
import { ensureSidecarBundle } from "../../sidecar/build";
import type { NetworkPolicy } from "../src/execution/vm/egress/egress-policy";
import type { EgressDenial } from "../src/execution/vm/egress/egress-proxy";
import { findOnPath } from "../src/execution/vm/process/bubblewrap";
import { ProcessVmProvider } from "../src/execution/vm/process/process-provider";
import type { ProviderLogger } from "../src/execution/vm/types";
import { UMBRA_LABELS } from "../src/execution/vm/types";

const HAS_BWRAP = findOnPath("bwrap") !== null;
const REQUIRE_ALL = process.env.UMBRA_TEST_REQUIRE_ALL === "1";
const IS_ROOT = process.getuid?.() === 0;
const LIMITS = { memoryMb: 256, pids: 128, cpus: 1, diskMb: 128 };
const HOST_SECRET = `host-secret-${randomBytes(8).toString("hex")}`;

const silent: ProviderLogger = { info: () => {}, warn: () => {}, error: () => {}, child: () => silent };

interface Sandbox {
  taskId: string;
  token: string;
  client: SidecarClient;
  workspace: string;
  socket: string;
}

describe("sandbox containment", () => {
  it.runIf(REQUIRE_ALL)("has bubblewrap and root when every test must run", () => {
    expect(HAS_BWRAP, "bwrap is not on PATH but UMBRA_TEST_REQUIRE_ALL=1").toBe(true);
    expect(IS_ROOT, "the containment suite needs root (uids, cgroups, loop mounts)").toBe(true);
  });

  describe.skipIf(!HAS_BWRAP || !IS_ROOT)("an attacker's commands", () => {
    let dataDir: string;
    let provider: ProcessVmProvider;
    let later: ProcessVmProvider | undefined;
    let model: LoopbackService;
    let hostService: LoopbackService;
    let attacker: Sandbox;
    let victim: Sandbox;
    let victimBeat: Promise<unknown>;
    const victimStop = new AbortController();
    const denials: EgressDenial[] = [];
    const lookups: string[] = [];
    const savedEnv = process.env.UMBRA_HOST_SECRET;
    let hostMarker: string;

    async function create(taskId: string, network?: NetworkPolicy): Promise<Sandbox> {
      const token = randomBytes(24).toString("hex");
      const handle = await provider.create({ taskId, token, network, labels: { [UMBRA_LABELS.taskId]: taskId } });
      const dir = join(dataDir, "vms", taskId);
      return {
        taskId,
        token,
        client: new SidecarClient({ endpoint: handle.endpoint, token }),
        workspace: join(dir, "workspace"),
        socket: join(dir, "sockets", "sidecar.sock"),
      };
    }

    beforeAll(async () => {
      process.env.UMBRA_HOST_SECRET = HOST_SECRET;
      dataDir = await mkdtemp(join(tmpdir(), "umbra-containment-"));
      // The bundle from a host path under /tmp, wherever the checkout is: a sandbox has a /tmp of its own,
      // and the bundle bound at its host path would show inside it, in the agent's /tmp too.
      const bundle = join(dataDir, "bundle", "sidecar.mjs");
      await mkdir(join(dataDir, "bundle"));
      await copyFile(await ensureSidecarBundle(), bundle);
      await writeFile(join(dataDir, "database-marker"), HOST_SECRET);
      // A host file the sandbox can see (it is under /etc) but whose owner, host root, is not mapped inside.
      hostMarker = `/etc/umbra-containment-${randomBytes(6).toString("hex")}`;
      await writeFile(hostMarker, HOST_SECRET, { mode: 0o600 });
      model = await startLoopbackService({ data: [{ id: "fake-model" }] });
      hostService = await startLoopbackService({ tasks: [HOST_SECRET] });
      provider = new ProcessVmProvider({
        dataDir,
        sidecarBundlePath: bundle,
        logger: silent,
        limits: LIMITS,
        network: { mode: "allowlist", allowedDomains: [`127.0.0.1:${model.port}`, "registry.npmjs.org"] },
        onEgressDenied: (denial) => denials.push(denial),
        egressLookup: async (host) => {
          lookups.push(host);
          throw new Error("no name resolution in tests");
        },
      });
      [attacker, victim] = await Promise.all([create("attacker"), create("victim")]);
      await writeFile(join(victim.workspace, "victim-secret.txt"), HOST_SECRET);
      victimBeat = victim.client
        .runCommand(heartbeatCommand("beat", 600), { signal: victimStop.signal })
        .catch(() => undefined);
      await eventually(async () => heartbeat(join(victim.workspace, "beat")) > 0, 15_000);
    }, 60_000);

    afterAll(async () => {
      victimStop.abort();
      await victimBeat;
      await provider?.destroy("attacker");
      await provider?.destroy("victim");
      await provider?.close();
      await later?.close();
      await model?.close();
      await hostService?.close();
      await rm(hostMarker, { force: true });
      if (savedEnv === undefined) delete process.env.UMBRA_HOST_SECRET;
      else process.env.UMBRA_HOST_SECRET = savedEnv;
      // Nothing of the sandboxes is left: no directory, no cgroup, no mount.
      expect(existsSync(join(dataDir, "vms", "attacker"))).toBe(false);
      expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(dataDir);
      await rm(dataDir, { recursive: true, force: true });
    }, 60_000);

    afterEach(async () => {
      // The attacker's sidecar still works, and the victim kept beating throughout.
      expect(await attacker.client.health()).toMatchObject({ ok: true });
      expect((await runIn(attacker.client, "echo still-here")).stdout).toBe("still-here\n");
      const before = heartbeat(join(victim.workspace, "beat"));
      await expect.poll(() => heartbeat(join(victim.workspace, "beat")), { timeout: 10_000 }).toBeGreaterThan(before);
      expect(await victim.client.health()).toMatchObject({ ok: true });
    }, 60_000);

    it("runs as an unprivileged user of its own, with no capabilities and the seccomp filters", async () => {
      const inside = await runIn(
        attacker.client,
        "id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status",
      );
      expect(inside.stdout).toMatch(/^1000\n/);
      expect(inside.stdout).toContain("CapEff:\t0000000000000000");
      expect(inside.stdout).toContain("CapBnd:\t0000000000000000");
      expect(inside.stdout).toContain("NoNewPrivs:\t1");
      expect(inside.stdout).toContain("Seccomp:\t2");
      // Seen from the host: the sidecar is not root and has no capabilities either; each sandbox has its own uid.
      const attackerUid = processStatus(sidecarPid("attacker")!).Uid!.split(/\s+/)[0];
      const victimUid = processStatus(sidecarPid("victim")!).Uid!.split(/\s+/)[0];
      expect(Number(attackerUid)).toBeGreaterThanOrEqual(3_000_000);
      expect(victimUid).not.toBe(attackerUid);
      expect(processStatus(sidecarPid("attacker")!).CapEff).toBe("0000000000000000");
      expect(statSync(join(attacker.workspace, ".")).uid).toBe(Number(attackerUid));
    });

    it("cannot remount, mount or write any host path", async () => {
      const escapeName = `umbra-escapeName-${randomBytes(4).toString("hex")}`;
      const result = await runIn(
        attacker.client,
        [
          "mount -o remount,rw /etc; echo remount=$?",
          "mount -t tmpfs none /mnt 2>&1; echo mount=$?",
          "unshare -r true; echo unshare=$?",
          `for p in /etc /usr /usr/local/bin / /run/umbra/conf /run/umbra/sockets /proc; do touch "$p/${escapeName}" 2>/dev/null; echo "$p=$?"; done`,
        ].join("; "),
      );
      for (const line of result.stdout.trim().split("\n")) expect(line, line).not.toMatch(/=0$/);
      for (const dir of ["/etc", "/usr", "/usr/local/bin", "/"]) expect(existsSync(join(dir, escapeName))).toBe(false);
    });

    it("cannot read /etc/shadow or a host file it can see", async () => {
      const result = await runIn(attacker.client, `cat /etc/shadow; echo shadow=$?; cat ${hostMarker}; echo marker=$?`);
      expect(result.stdout).toMatch(/shadow=1/);
      expect(result.stdout).toMatch(/marker=1/);
      expect(result.output).not.toContain("root:");
      expect(result.output).not.toContain(HOST_SECRET);
    });

    it("cannot find its sidecar's token: not in any environment, command line or file it can read", async () => {
      const result = await runIn(
        attacker.client,
        "cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n'; ls -la /run /run/umbra 2>&1; " +
          "grep -rs . /tmp /run 2>/dev/null | head -c 100000; ps -eo pid,user,args",
      );
      expect(result.output).not.toContain(attacker.token);
      // The sidecar is not even visible: the agent's processes live in a pid namespace of their own.
      expect(result.stdout).not.toMatch(/sidecar\.mjs/);
      // From the host: the token is in no process environment of the sandbox either.
      for (const pid of [sidecarPid("attacker")!]) {
        expect(JSON.stringify(processEnvironment(pid))).not.toContain(attacker.token);
        expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).not.toContain(attacker.token);
      }
    });

    it("cannot sniff loopback: raw and packet sockets are refused", async () => {
      const result = await runIn(
        attacker.client,
        [
          `python3 -c "import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))"`,
          "echo packet=$?",
          `python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)"`,
          "echo raw=$?",
        ].join("; "),
      );
      expect(result.stdout).toContain("packet=1");
      expect(result.stdout).toContain("raw=1");
      expect(result.stderr).toContain("Operation not permitted");
    });

    it("cannot read another sandbox's workspace, the data directory or the server's environment", async () => {
      const result = await runIn(
        attacker.client,
        [
          `cat ${join(victim.workspace, "victim-secret.txt")}; echo victim=$?`,
          `ls ${dataDir}; cat ${join(dataDir, "database-marker")}; echo data=$?`,
          `cat /proc/${process.pid}/environ; echo server=$?`,
          "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c UMBRA_HOST_SECRET; true",
        ].join("; "),
      );
      expect(result.stdout).toMatch(/victim=1/);
      expect(result.stdout).toMatch(/data=1/);
      expect(result.stdout).toMatch(/server=1/);
      expect(result.output).not.toContain(HOST_SECRET);
    });

    it("cannot see the host's processes", async () => {
      const result = await runIn(attacker.client, "ps -eo pid,args");
      const lines = result.stdout.trim().split("\n").slice(1);
      expect(lines.length).toBeLessThan(10);
      expect(result.stdout).not.toMatch(/vitest|node /);
    });

    it("writes only its workspace and a /tmp of its own", async () => {
      const result = await runIn(attacker.client, "echo mine > inside.txt && echo tmp > /tmp/own.txt && echo ok");
      expect(result.stdout).toBe("ok\n");
      expect(readFileSync(join(attacker.workspace, "inside.txt"), "utf8")).toBe("mine\n");
      expect(existsSync("/tmp/own.txt")).toBe(false);
    });

    it("reaches the model endpoint the policy allows on host loopback, at its own URL and through the proxy", async () => {
      const hits = model.hits;
      const url = `http://127.0.0.1:${model.port}/v1/models`;
      // The URL the server was configured with works unchanged inside; so does asking the proxy for it.
      const direct = await runIn(attacker.client, `curl -sS ${url}`);
      expect(direct.exitCode).toBe(0);
      expect(JSON.parse(direct.stdout)).toEqual({ data: [{ id: "fake-model" }] });
      const proxied = await runIn(attacker.client, `curl -sS --noproxy '' ${url}`);
      expect(JSON.parse(proxied.stdout)).toEqual({ data: [{ id: "fake-model" }] });
      expect(model.hits).toBe(hits + 2);
    });

    it("cannot connect to anything else on host loopback: the API, another sandbox's sidecar, Postgres", async () => {
      denials.length = 0;
      const result = await runIn(
        attacker.client,
        [
          `curl -s --noproxy '' -o /dev/null -w 'proxied=%{http_code}\\n' http://127.0.0.1:${hostService.port}/api/tasks`,
          `curl -s --noproxy '*' -m 5 http://127.0.0.1:${hostService.port}/api/tasks; echo direct=$?`,
          `curl -s --noproxy '' -o /dev/null -w 'postgres=%{http_connect}\\n' -p http://127.0.0.1:5432/`,
          `python3 -c "import socket; socket.create_connection(('127.0.0.1', 5432), 5)" 2>&1 | tail -1`,
          `curl -s --unix-socket ${victim.socket} http://sidecar/health; echo sidecar=$?`,
        ].join("; "),
      );
      expect(result.stdout).toContain("proxied=403");
      expect(result.stdout).toMatch(/direct=7/); // connection refused: nothing listens on the sandbox's own loopback
      expect(result.stdout).toContain("postgres=403");
      expect(result.stdout).toContain("ConnectionRefusedError");
      expect(result.stdout).toMatch(/sidecar=7/); // no such socket inside
      expect(hostService.hits).toBe(0);
      expect(denials).toEqual(
        expect.arrayContaining([
          { taskId: "attacker", host: "127.0.0.1", port: hostService.port, reason: "not in the allowlist" },
          { taskId: "attacker", host: "127.0.0.1", port: 5432, reason: "not in the allowlist" },
        ]),
      );
    });

    it("cannot reach an address outside the allowlist; the refusal is reported without resolving the name", async () => {
      denials.length = 0;
      const result = await runIn(
        attacker.client,
        [
          "curl -s -o /dev/null -w 'https=%{http_connect}\\n' https://example.com/",
          "curl -s -o /dev/null -w 'http=%{http_code}\\n' http://example.com/",
          "curl -s --noproxy '*' -m 5 http://203.0.113.7/; echo direct=$?",
        ].join("; "),
      );
      expect(result.stdout).toContain("https=403");
      expect(result.stdout).toContain("http=403");
      expect(result.stdout).toMatch(/direct=7/); // network unreachable: the namespace has no route out
      expect(denials).toEqual([
        { taskId: "attacker", host: "example.com", port: 443, reason: "not in the allowlist" },
        { taskId: "attacker", host: "example.com", port: 80, reason: "not in the allowlist" },
      ]);
      expect(lookups).not.toContain("example.com");
    });

    it("is killed at the memory limit, and the limit is reported", async () => {
      const result = await runIn(attacker.client, `python3 -c "b = b'x' * (${LIMITS.memoryMb * 2} * 1024 * 1024)"`);
      expect(result.exitCode).not.toBe(0);
      expect(result.limit).toBe(`killed: memory limit ${LIMITS.memoryMb} MB reached`);
      expect(result.stderr).toContain(`memory limit ${LIMITS.memoryMb} MB reached`);
    });

    it("is stopped at the process limit by a fork bomb, and the limit is reported", async () => {
      const result = await runIn(attacker.client, "bomb() { bomb | bomb & }; bomb; sleep 30");
      expect(result.limit).toBe(
        `killed: process limit ${LIMITS.pids} reached (every process of the agent was stopped)`,
      );
      expect((await runIn(attacker.client, "ps -eo pid= | wc -l")).stdout.trim()).toMatch(/^[0-9]$/);
    });

    it("fills its disk and /tmp only up to the quota, and the limit is reported", async () => {
      const result = await runIn(
        attacker.client,
        `dd if=/dev/zero of=fill bs=1M count=${LIMITS.diskMb * 2} 2>&1; dd if=/dev/zero of=/tmp/fill bs=1M count=16 2>&1`,
      );
      expect(result.output).toContain("No space left on device");
      expect(result.limit).toBe(`disk limit ${LIMITS.diskMb} MB reached: the workspace volume is full`);
      expect(statSync(join(attacker.workspace, "fill")).size).toBeLessThanOrEqual(LIMITS.diskMb * 1024 * 1024);
      const freed = await runIn(attacker.client, "rm -f fill /tmp/fill && echo freed");
      expect(freed.stdout).toBe("freed\n");
      expect(freed.limit).toBeUndefined();
    });

    it("takes a network policy of its own at creation, and leaves nothing behind when destroyed", async () => {
      const doomed = await create("doomed", { mode: "off", allowedDomains: [`127.0.0.1:${model.port}`] });
      denials.length = 0;
      const offline = await runIn(
        doomed.client,
        `curl -s -o /dev/null -w '%{http_code}' --noproxy '' http://127.0.0.1:${model.port}/`,
      );
      expect(offline.stdout).toBe("403");
      expect(denials).toEqual([{ taskId: "doomed", host: "127.0.0.1", port: model.port, reason: "network off" }]);
      await runIn(doomed.client, "sleep 300 > /dev/null 2>&1 &");
      const pid = sidecarPid("doomed")!;
      const cgroupDirs = readdirSync("/sys/fs/cgroup/pids/umbra-sandboxes");
      expect(cgroupDirs).toContain("doomed");
      await provider.destroy("doomed");
      expect(processRunning(pid)).toBe(false);
      expect(readdirSync("/sys/fs/cgroup/pids/umbra-sandboxes")).not.toContain("doomed");
      expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(join(dataDir, "vms", "doomed"));
      expect(existsSync(join(dataDir, "vms", "doomed"))).toBe(false);
    });

    it("has its egress served again by a later server process, under the policy it started with", async () => {
      // The first provider stops serving (its server went away); the sandboxes keep running.
      await provider.close();
      const refused = await runIn(
        attacker.client,
        `curl -s -o /dev/null -w '%{http_code}' --noproxy '' http://127.0.0.1:${model.port}/`,
      );
      expect(refused.stdout).toBe("000");
      later = new ProcessVmProvider({
        dataDir,
        sidecarBundlePath: await ensureSidecarBundle(),
        logger: silent,
        onEgressDenied: (denial) => denials.push(denial),
      });
      expect((await later.list({ [UMBRA_LABELS.taskId]: "attacker" })).map((vm) => vm.externalId)).toEqual([
        "attacker",
      ]);
      const served = await runIn(attacker.client, `curl -sS http://127.0.0.1:${model.port}/v1/models`);
      expect(JSON.parse(served.stdout)).toEqual({ data: [{ id: "fake-model" }] });
      denials.length = 0;
      await runIn(attacker.client, "curl -s -o /dev/null https://example.com/");
      expect(denials).toEqual([{ taskId: "attacker", host: "example.com", port: 443, reason: "not in the allowlist" }]);
    });
  });
});
