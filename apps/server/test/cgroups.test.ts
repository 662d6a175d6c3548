/**
 * Finding where sandbox cgroups can live, from the kernel's own description
 * of this process's cgroups (/proc/self/mountinfo and /proc/self/cgroup, the
 * formats of cgroup v1 and v2). The v1 case also runs against this machine's
 * real hierarchy when it has one; v2 delegation is checked on a directory
 * laid out like a cgroup2 mount, since a host offers only one of the two.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { detectCgroups } from "../src/execution/vm/process/cgroups";
import { reportHostSupport } from "../src/execution/vm/process/sandbox-host";
import type { ProviderLogger } from "../src/execution/vm/types";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function fakeRoot(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "umbra-cgroup-"));
  dirs.push(dir);
  return dir;
}

describe("cgroup detection", () => {
  it("uses cgroup v1 hierarchies below this process's own cgroup of each controller", async () => {
    const root = await fakeRoot();
    for (const c of ["memory", "pids", "cpu,cpuacct"]) mkdirSync(join(root, c, "job", "7"), { recursive: true });
    const mountinfo = [
      `30 25 0:26 / ${root}/memory rw,nosuid - cgroup cgroup rw,memory`,
      `31 25 0:27 / ${root}/pids rw,nosuid - cgroup cgroup rw,pids`,
      `32 25 0:28 / ${root}/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct`,
    ].join("\n");
    const procCgroup = "4:memory:/job/7\n3:pids:/\n2:cpu,cpuacct:/job/7\n0::/\n";
    const support = detectCgroups({ mountinfo, procCgroup });
    expect(support.missing).toEqual({});
    expect(support.controllers).toEqual({
      memory: { version: 1, parent: join(root, "memory", "job", "7", "umbra-sandboxes") },
      pids: { version: 1, parent: join(root, "pids", "umbra-sandboxes") },
      cpu: { version: 1, parent: join(root, "cpu,cpuacct", "job", "7", "umbra-sandboxes") },
    });
    // All sandboxes together weigh a quarter of the server's own group (1024) on a busy CPU.
    expect(readFileSync(join(root, "cpu,cpuacct", "job", "7", "umbra-sandboxes", "cpu.shares"), "utf8")).toBe("256");
    expect(support.weightProblem).toBeUndefined();
  });

  it("delegates cgroup v2 controllers to a child of this process's cgroup", async () => {
    const root = await fakeRoot();
    mkdirSync(join(root, "server.scope"), { recursive: true });
    writeFileSync(join(root, "server.scope", "cgroup.controllers"), "cpuset cpu io memory pids\n");
    const support = detectCgroups({
      mountinfo: `40 25 0:30 / ${root} rw,nosuid - cgroup2 cgroup2 rw`,
      procCgroup: "0::/server.scope\n",
    });
    const parent = join(root, "server.scope", "umbra-sandboxes");
    expect(support.controllers).toEqual({
      memory: { version: 2, parent },
      pids: { version: 2, parent },
      cpu: { version: 2, parent },
    });
    expect(readFileSync(join(root, "server.scope", "cgroup.subtree_control"), "utf8")).toBe("+memory +pids +cpu");
    expect(readFileSync(join(parent, "cgroup.subtree_control"), "utf8")).toBe("+memory +pids +cpu");
    expect(readFileSync(join(parent, "cpu.weight"), "utf8")).toBe("25");
  });

  it("says why the sandboxes' CPU weight could not be lowered, and still uses the controller", async () => {
    const root = await fakeRoot();
    // A directory where the weight file should be: writing it fails as a read-only file would.
    mkdirSync(join(root, "cpu", "umbra-sandboxes", "cpu.shares"), { recursive: true });
    const support = detectCgroups({
      mountinfo: `32 25 0:28 / ${join(root, "cpu")} rw,nosuid - cgroup cgroup rw,cpu`,
      procCgroup: "2:cpu:/\n0::/\n",
    });
    expect(support.controllers.cpu).toEqual({ version: 1, parent: join(root, "cpu", "umbra-sandboxes") });
    expect(support.weightProblem).toMatch(/^cannot write .*umbra-sandboxes\/cpu\.shares: EISDIR$/);
  });

  it("says why a limit cannot be enforced when no hierarchy offers its controller", () => {
    const support = detectCgroups({ mountinfo: "", procCgroup: "0::/\n" });
    expect(support.controllers).toEqual({});
    expect(support.missing).toEqual({
      memory: "no cgroup hierarchy offers this controller",
      pids: "no cgroup hierarchy offers this controller",
      cpu: "no cgroup hierarchy offers this controller",
    });
  });

  it.runIf(existsSync("/sys/fs/cgroup/pids/cgroup.procs") && process.getuid?.() === 0)(
    "finds this machine's v1 pids hierarchy",
    () => {
      const support = detectCgroups();
      expect(support.controllers.pids).toEqual({ version: 1, parent: expect.stringMatching(/umbra-sandboxes$/) });
    },
  );

  it.runIf(existsSync("/sys/fs/cgroup/cpu/cpu.shares") && process.getuid?.() === 0)(
    "lowers the sandboxes' weight in this machine's v1 cpu hierarchy",
    () => {
      const support = detectCgroups();
      const parent = support.controllers.cpu?.parent ?? "";
      expect(parent).toMatch(/umbra-sandboxes$/);
      expect(readFileSync(join(parent, "cpu.shares"), "utf8").trim()).toBe("256");
      expect(support.weightProblem).toBeUndefined();
    },
  );
});

describe("start-up report", () => {
  it("warns once, loudly, for every limit this host cannot enforce, naming the setting", () => {
    const warnings: string[] = [];
    const log: ProviderLogger = {
      info: () => {},
      warn: (_fields, message) => warnings.push(message ?? ""),
      error: () => {},
      child: () => log,
    };
    const host = {
      bwrap: "/usr/bin/bwrap",
      setpriv: "/usr/bin/setpriv",
      unshare: "/usr/bin/unshare",
      seccomp: true,
      cgroups: {
        controllers: {},
        missing: { memory: "no memory controller", pids: "no pids controller" },
        weightProblem: "cannot write /sys/fs/cgroup/cpu/umbra-sandboxes/cpu.shares: EACCES",
      },
      volume: { enforced: false, reason: "no /dev/loop-control (loop devices)" },
    };
    reportHostSupport(host, log);
    reportHostSupport(host, log);
    expect(warnings).toEqual([
      "LIMIT NOT ENFORCED: SANDBOX_MEMORY_MB (memory cgroup): no memory controller",
      "LIMIT NOT ENFORCED: SANDBOX_PIDS (pids cgroup): no pids controller",
      "SANDBOX CPU PRIORITY NOT LOWERED: busy sandboxes compete with the server on equal terms (cannot write /sys/fs/cgroup/cpu/umbra-sandboxes/cpu.shares: EACCES)",
      "LIMIT NOT ENFORCED: SANDBOX_DISK_MB: no /dev/loop-control (loop devices); /tmp and the workspace share the host's disk",
    ]);
  });
});
