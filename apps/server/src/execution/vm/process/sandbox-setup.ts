/**
 * Everything a confined sandbox has besides its processes, made before it
 * starts and removed after it ends: its host uid, its volume (workspace and
 * /tmp), its cgroups, its read-only configuration (the agent sandbox's
 * description and both seccomp filters) and its sockets directory.
 *
 * Layout of `${dataDir}/vms/<taskId>/`:
 *   vm.json, sidecar.log       (root only)
 *   volume.img, volume/        the sandbox's disk: volume/workspace, volume/tmp
 *   workspace -> volume/workspace
 *   conf/                      box.json, agent.bpf, sidecar.bpf (read-only inside)
 *   sockets/                   sidecar.sock (the sidecar's), egress.sock (the server's)
 *
 * Invariant: releaseSandbox() undoes prepareSandbox() from any point it
 * reached (a half-made sandbox, or one whose record is lost, included) and may
 * be repeated; the processes still in the sandbox's cgroups end with it.
 */
import { chown, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { AgentBoxSpec } from "@repo/workspace";
import { type NetworkPolicy, parseEntry } from "../egress/egress-policy";
import { INSIDE, programMounts, SANDBOX_UID } from "./bubblewrap";
import type { CgroupLimits, SandboxCgroupManager, SandboxCgroups } from "./cgroups";
import type { HostSupport } from "./sandbox-host";
import type { SandboxUids } from "./sandbox-uid";
import { compileSeccompFilter } from "./seccomp";
import { createVolume, unmountVolume } from "./volume";

/** Longest unix socket path the kernel accepts (sun_path holds 108 bytes with its terminator). */
const SOCKET_PATH_MAX = 107;
/** The port the egress forwarder listens on inside every sandbox (its network is its own). */
export const EGRESS_PORT = 3128;

export interface SandboxLimits extends CgroupLimits {
  /** Workspace and /tmp together, MB. */
  diskMb: number;
}

export interface SandboxPaths {
  dir: string;
  workspace: string;
  volume: { workspace: string; tmp: string };
  conf: string;
  sockets: string;
  sidecarSocket: string;
  egressSocket: string;
}

export function sandboxPaths(dir: string): SandboxPaths {
  return {
    dir,
    workspace: join(dir, "workspace"),
    volume: { workspace: join(dir, "volume", "workspace"), tmp: join(dir, "volume", "tmp") },
    conf: join(dir, "conf"),
    sockets: join(dir, "sockets"),
    sidecarSocket: join(dir, "sockets", "sidecar.sock"),
    egressSocket: join(dir, "sockets", "egress.sock"),
  };
}

/** Throws when the host paths of the sandbox's sockets are too long for the kernel. */
export function assertSocketPaths(paths: SandboxPaths): void {
  for (const path of [paths.sidecarSocket, paths.egressSocket]) {
    if (Buffer.byteLength(path) > SOCKET_PATH_MAX) {
      throw new Error(
        `${path} is longer than a unix socket path may be (${SOCKET_PATH_MAX} bytes): use a shorter DATA_DIR`,
      );
    }
  }
}

export interface PreparedSandbox {
  uid: number | null;
  cgroups: SandboxCgroups | null;
  volumeImage: boolean;
}

export interface PrepareContext {
  taskId: string;
  /** The sandbox's egress policy (its loopback endpoints are forwarded inside). */
  network: NetworkPolicy;
  paths: SandboxPaths;
  host: HostSupport;
  uids: SandboxUids;
  cgroups: SandboxCgroupManager;
  limits: SandboxLimits;
  nodePath: string;
  /** Filled in as each part is made, so a failure can release what exists. */
  made: Partial<PreparedSandbox>;
}

const LOOPBACK_NAMES = new Set(["localhost", "127.0.0.1", "::1"]);

/**
 * The allowlist's host-loopback endpoints (e.g. `127.0.0.1:8080`), one per port: inside, the
 * sidecar listens on that port and tunnels to the entry through the proxy.
 */
export function loopbackForwards(network: NetworkPolicy): { port: number; target: string }[] {
  if (network.mode === "off") return [];
  const forwards = new Map<number, string>();
  for (const raw of network.allowedDomains) {
    const entry = parseEntry(raw);
    if (!entry || entry.wildcard || entry.port === null || entry.port === EGRESS_PORT) continue;
    if (!LOOPBACK_NAMES.has(entry.host) && !entry.host.startsWith("127.")) continue;
    if (!forwards.has(entry.port)) {
      forwards.set(
        entry.port,
        entry.host.includes(":") ? `[${entry.host}]:${entry.port}` : `${entry.host}:${entry.port}`,
      );
    }
  }
  return [...forwards].map(([port, target]) => ({ port, target }));
}

function agentBoxSpec(context: PrepareContext, cgroups: SandboxCgroups | null): AgentBoxSpec {
  const { host, limits } = context;
  const inside = (controller: string, file?: string) =>
    file ? `${INSIDE.cgroup}/${controller}/${file.split("/").pop()}` : undefined;
  const proxy = `http://127.0.0.1:${EGRESS_PORT}`;
  return {
    version: 1,
    bwrap: host.bwrap!,
    uid: SANDBOX_UID,
    gid: SANDBOX_UID,
    mounts: programMounts(context.nodePath),
    seccompFile: `${INSIDE.conf}/agent.bpf`,
    env: {
      HTTP_PROXY: proxy,
      HTTPS_PROXY: proxy,
      http_proxy: proxy,
      https_proxy: proxy,
      NO_PROXY: "localhost,127.0.0.1,::1",
      no_proxy: "localhost,127.0.0.1,::1",
    },
    egress: { port: EGRESS_PORT, socket: `${INSIDE.sockets}/egress.sock` },
    loopbackForwards: loopbackForwards(context.network),
    limits: {
      memoryMb: host.cgroups.controllers.memory ? limits.memoryMb : undefined,
      pids: host.cgroups.controllers.pids ? limits.pids : undefined,
      cpus: host.cgroups.controllers.cpu ? limits.cpus : undefined,
      diskMb: host.volume.enforced ? limits.diskMb : undefined,
    },
    counters: {
      oomKills: cgroups?.counters.oomKills
        ? { file: inside("memory", cgroups.counters.oomKills.file)!, key: cgroups.counters.oomKills.key }
        : undefined,
      pidsMax: cgroups?.counters.pidsMax
        ? { file: inside("pids", cgroups.counters.pidsMax.file)!, key: cgroups.counters.pidsMax.key }
        : undefined,
    },
  };
}

/** Makes the sandbox's uid, volume, cgroups, configuration and sockets directory. */
export async function prepareSandbox(context: PrepareContext): Promise<PreparedSandbox> {
  const { paths, host, made } = context;
  assertSocketPaths(paths);
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  const uid = host.setpriv ? await context.uids.claim(context.taskId) : null;
  made.uid = uid;
  const owner = { uid: uid ?? process.getuid?.() ?? 0, gid: uid ?? process.getgid?.() ?? 0 };
  made.volumeImage = host.volume.enforced;
  await createVolume(paths.dir, host.volume.enforced ? context.limits.diskMb : null, owner);
  await symlink(join("volume", "workspace"), paths.workspace);
  const cgroups = context.cgroups.enabled ? await context.cgroups.create(context.taskId, context.limits) : null;
  made.cgroups = cgroups;
  await mkdir(paths.conf, { mode: 0o755 });
  await writeFile(join(paths.conf, "box.json"), `${JSON.stringify(agentBoxSpec(context, cgroups), null, 2)}\n`, {
    mode: 0o644,
  });
  if (host.seccomp) {
    await writeFile(join(paths.conf, "agent.bpf"), compileSeccompFilter("agent"), { mode: 0o644 });
    await writeFile(join(paths.conf, "sidecar.bpf"), compileSeccompFilter("sidecar"), { mode: 0o644 });
  }
  await mkdir(paths.sockets, { mode: 0o700 });
  await chown(paths.sockets, owner.uid, owner.gid);
  return { uid, cgroups, volumeImage: host.volume.enforced };
}

/** Releases what prepareSandbox made (from a record or a failed preparation). Idempotent. */
export async function releaseSandbox(
  dir: string,
  taskId: string,
  made: { uid?: number | null; cgroupDirs?: string[] },
  deps: { uids: SandboxUids; cgroups: SandboxCgroupManager },
): Promise<void> {
  // Also the cgroups its name gives, recorded or not: whatever still runs in them ends with them.
  const dirs = [...new Set([...(made.cgroupDirs ?? []), ...deps.cgroups.dirsFor(taskId)])];
  await deps.cgroups.remove({ dirs });
  await unmountVolume(dir);
  if (made.uid != null) await deps.uids.release(made.uid, taskId);
}

/** Removes a sandbox's directory; a volume still mounted there (a process was still exiting) is detached first. */
export async function removeSandboxDir(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EBUSY") throw error;
    await unmountVolume(dir);
    await rm(dir, { recursive: true, force: true });
  }
}
