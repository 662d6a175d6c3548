/**
 * Per-sandbox control groups: memory, process count and CPU limits for
 * everything in one sandbox (the sidecar and the agent's processes), on
 * cgroup v1 (one hierarchy per controller) or v2 (the unified hierarchy).
 *
 * Where: below the server's own cgroup, in `umbra-sandboxes/<taskId>` of each
 * hierarchy, so a sandbox never leaves the accounting of whatever runs the
 * server, and nothing outside the server's own subtree is touched.
 *
 * Invariants:
 * - Detection is done once, at start-up, and says per controller why it
 *   cannot be used; the provider warns loudly about every limit it cannot
 *   enforce, and never half-applies one (a cgroup whose limit cannot be
 *   written fails the sandbox's creation).
 * - A sandbox's processes join the cgroup before any of them runs (the
 *   launcher writes its own pid, then becomes bubblewrap; launch.ts).
 * - remove() ends whatever is still in the cgroup and deletes it; it is
 *   idempotent.
 * - All sandboxes together weigh a quarter of the server when the CPU is
 *   contended (the parent's cpu.shares / cpu.weight): a sandbox that keeps
 *   every core busy cannot keep the API, the status events or the store's git
 *   waiting. The weight only orders contended time: an idle server leaves
 *   every core to the sandboxes, up to each one's SANDBOX_CPUS quota.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { CgroupCounter } from "@repo/workspace";
import { waitUntil } from "./proc";

export type Controller = "memory" | "pids" | "cpu";
const CONTROLLERS: readonly Controller[] = ["memory", "pids", "cpu"];
const PARENT = "umbra-sandboxes";
const CPU_PERIOD_US = 100_000;
/** The sandboxes' parent's CPU weight: a quarter of a default group's (v1 cpu.shares 1024, v2 cpu.weight 100). */
const SANDBOXES_CPU_WEIGHT = { 1: ["cpu.shares", "256"], 2: ["cpu.weight", "25"] } as const;

export interface CgroupLimits {
  /** Memory limit, MB. */
  memoryMb: number;
  /** Most processes and threads at once. */
  pids: number;
  /** CPU time, in cores (1 = one core's worth). */
  cpus: number;
}

/** Where one controller lives: its hierarchy's directory for our sandboxes. */
interface ControllerHome {
  version: 1 | 2;
  /** `<mount><own path>/umbra-sandboxes`. */
  parent: string;
}

export interface CgroupSupport {
  controllers: Partial<Record<Controller, ControllerHome>>;
  /** Why a controller cannot be used. */
  missing: Partial<Record<Controller, string>>;
  /** Why the sandboxes' CPU weight could not be lowered below the server's. */
  weightProblem?: string;
}

/** One sandbox's cgroups, as recorded in vm.json. */
export interface SandboxCgroups {
  /** Directories of the sandbox's cgroup, one per hierarchy used. */
  dirs: string[];
  /** Counters that say a limit was hit, by what they count. */
  counters: { oomKills?: CgroupCounter; pidsMax?: CgroupCounter };
  /** Which controller lives in which of `dirs` (for mounting the counters into the sandbox). */
  controllerDirs: Partial<Record<Controller, string>>;
}

interface Mount {
  point: string;
  type: "cgroup" | "cgroup2";
  options: string[];
}

function readMounts(mountinfo: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    const [type, , superOptions = ""] = right.split(" ");
    if (type !== "cgroup" && type !== "cgroup2") continue;
    const point = (left.split(" ")[4] ?? "").replace(/\\040/g, " ");
    mounts.push({ point, type, options: superOptions.split(",") });
  }
  return mounts;
}

/** Own cgroup path per v1 controller, and the v2 path under key "". */
function readOwnPaths(procCgroup: string): Map<string, string> {
  const paths = new Map<string, string>();
  for (const line of procCgroup.split("\n")) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line.trim());
    if (!match) continue;
    const [, controllers = "", path = "/"] = match;
    if (controllers === "") paths.set("", path);
    for (const controller of controllers.split(",")) paths.set(controller, path);
  }
  return paths;
}

function tryMkdir(dir: string): string | null {
  try {
    mkdirSync(dir, { recursive: true });
    return null;
  } catch (error) {
    return `cannot create ${dir}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
  }
}

/** Enables `controllers` for the children of a v2 cgroup; returns why not, or null. */
function enableV2(dir: string, controllers: Controller[]): string | null {
  try {
    writeFileSync(join(dir, "cgroup.subtree_control"), controllers.map((c) => `+${c}`).join(" "));
    return null;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EBUSY") {
      return `${dir} has processes of its own, so cgroup v2 cannot delegate controllers below it (run the server in a cgroup of its own, e.g. systemd Delegate=yes)`;
    }
    return `cannot enable ${controllers.join(",")} in ${dir}: ${code ?? (error as Error).message}`;
  }
}

/** Gives the sandboxes' parent cgroup its lowered CPU weight; notes why not in `support`. */
function lowerWeight(support: CgroupSupport, parent: string, version: 1 | 2): void {
  const [file, value] = SANDBOXES_CPU_WEIGHT[version];
  try {
    writeFileSync(join(parent, file), value);
  } catch (error) {
    support.weightProblem = `cannot write ${join(parent, file)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
  }
}

export interface DetectOptions {
  /** Contents of /proc/self/mountinfo and /proc/self/cgroup (injected by tests). */
  mountinfo?: string;
  procCgroup?: string;
}

/** Which controllers this process can use for sandboxes, and why not the others. */
export function detectCgroups(options: DetectOptions = {}): CgroupSupport {
  const support: CgroupSupport = { controllers: {}, missing: {} };
  let mountinfo: string;
  let procCgroup: string;
  try {
    mountinfo = options.mountinfo ?? readFileSync("/proc/self/mountinfo", "utf8");
    procCgroup = options.procCgroup ?? readFileSync("/proc/self/cgroup", "utf8");
  } catch (error) {
    for (const c of CONTROLLERS) support.missing[c] = `cannot read /proc: ${(error as Error).message}`;
    return support;
  }
  const mounts = readMounts(mountinfo);
  const own = readOwnPaths(procCgroup);
  const v2Wanted: Controller[] = [];
  for (const controller of CONTROLLERS) {
    const v1 = mounts.find((m) => m.type === "cgroup" && m.options.includes(controller));
    if (v1) {
      const parent = join(v1.point, own.get(controller) ?? "/", PARENT);
      const problem = tryMkdir(parent);
      if (problem) support.missing[controller] = problem;
      else support.controllers[controller] = { version: 1, parent };
      if (!problem && controller === "cpu") lowerWeight(support, parent, 1);
      continue;
    }
    v2Wanted.push(controller);
  }
  if (v2Wanted.length === 0) return support;
  const v2 = mounts.find((m) => m.type === "cgroup2");
  if (!v2) {
    for (const c of v2Wanted) support.missing[c] = "no cgroup hierarchy offers this controller";
    return support;
  }
  const ownDir = join(v2.point, own.get("") ?? "/");
  let available: string[] = [];
  try {
    available = readFileSync(join(ownDir, "cgroup.controllers"), "utf8").trim().split(/\s+/);
  } catch {
    // none
  }
  const usable = v2Wanted.filter((c) => available.includes(c));
  for (const c of v2Wanted) {
    if (!usable.includes(c)) support.missing[c] = `the cgroup v2 controller is not available in ${ownDir}`;
  }
  if (usable.length === 0) return support;
  const parent = join(ownDir, PARENT);
  const problem = enableV2(ownDir, usable) ?? tryMkdir(parent) ?? enableV2(parent, usable);
  if (!problem && usable.includes("cpu")) lowerWeight(support, parent, 2);
  for (const c of usable) {
    if (problem) support.missing[c] = problem;
    else support.controllers[c] = { version: 2, parent };
  }
  return support;
}

function limitFiles(controller: Controller, version: 1 | 2, limits: CgroupLimits): [string, string][] {
  const bytes = String(limits.memoryMb * 1024 * 1024);
  const quota = String(Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US)));
  if (version === 1) {
    if (controller === "memory") return [["memory.limit_in_bytes", bytes]];
    if (controller === "pids") return [["pids.max", String(limits.pids)]];
    return [
      ["cpu.cfs_period_us", String(CPU_PERIOD_US)],
      ["cpu.cfs_quota_us", quota],
    ];
  }
  if (controller === "memory") return [["memory.max", bytes]];
  if (controller === "pids") return [["pids.max", String(limits.pids)]];
  return [["cpu.max", `${quota} ${CPU_PERIOD_US}`]];
}

/** Files whose absence is no failure: swap limits where the kernel has no swap accounting. */
function optionalFiles(controller: Controller, version: 1 | 2, limits: CgroupLimits): [string, string][] {
  if (controller !== "memory") return [];
  const bytes = String(limits.memoryMb * 1024 * 1024);
  return version === 1 ? [["memory.memsw.limit_in_bytes", bytes]] : [["memory.swap.max", "0"]];
}

export class SandboxCgroupManager {
  constructor(private readonly support: CgroupSupport) {}

  /** True when at least one limit can be enforced. */
  get enabled(): boolean {
    return Object.keys(this.support.controllers).length > 0;
  }

  /** Creates the sandbox's cgroups with `limits`; throws if a limit cannot be written. */
  async create(taskId: string, limits: CgroupLimits): Promise<SandboxCgroups> {
    const result: SandboxCgroups = { dirs: [], counters: {}, controllerDirs: {} };
    for (const controller of CONTROLLERS) {
      const home = this.support.controllers[controller];
      if (!home) continue;
      const dir = join(home.parent, taskId);
      if (!result.dirs.includes(dir)) {
        mkdirSync(dir, { recursive: true });
        result.dirs.push(dir);
      }
      result.controllerDirs[controller] = dir;
      for (const [file, value] of limitFiles(controller, home.version, limits)) {
        await writeFile(join(dir, file), value);
      }
      for (const [file, value] of optionalFiles(controller, home.version, limits)) {
        if (existsSync(join(dir, file))) await writeFile(join(dir, file), value).catch(() => {});
      }
      if (controller === "memory") {
        result.counters.oomKills =
          home.version === 1
            ? { file: join(dir, "memory.oom_control"), key: "oom_kill" }
            : { file: join(dir, "memory.events"), key: "oom_kill" };
      }
      if (controller === "pids") result.counters.pidsMax = { file: join(dir, "pids.events"), key: "max" };
    }
    return result;
  }

  /** The directories a sandbox of `taskId` has (or would have) on this host. */
  dirsFor(taskId: string): string[] {
    return [...new Set(Object.values(this.support.controllers).map((home) => join(home.parent, taskId)))];
  }

  /** Kills what is left in the sandbox's cgroups and removes them. Idempotent. */
  async remove(cgroups: Pick<SandboxCgroups, "dirs">): Promise<void> {
    for (const dir of cgroups.dirs) {
      if (!existsSync(dir)) continue;
      await killMembers(dir);
      const empty = await waitUntil(async () => (await members(dir)).length === 0, 5000);
      try {
        await rmdir(dir);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
          throw new Error(
            `cannot remove cgroup ${dir}${empty ? "" : " (processes remain)"}: ${(error as Error).message}`,
          );
        }
      }
    }
  }
}

async function members(dir: string): Promise<number[]> {
  try {
    return (await readFile(join(dir, "cgroup.procs"), "utf8")).split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function killMembers(dir: string): Promise<void> {
  if (existsSync(join(dir, "cgroup.kill"))) {
    await writeFile(join(dir, "cgroup.kill"), "1").catch(() => {});
    return;
  }
  for (const pid of await members(dir)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}
