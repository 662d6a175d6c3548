/**
 * The bubblewrap command line that confines one sandbox (the sidecar and,
 * inside it, the agent's own sandbox; see the sidecar's agent-box.ts).
 *
 * What the sandbox sees, and why:
 * - the system's programs and libraries (/usr and friends, /etc) read-only, so
 *   git, sh and node run; the rest of the host's files (other workspaces, the
 *   database, home directories) do not exist inside;
 * - the sidecar bundle read-only at /run/umbra/sidecar.mjs, whatever its
 *   host path (a host path under /tmp would otherwise show inside the
 *   sandbox's own /tmp, and the agent's with it), and the node binary
 *   read-only;
 * - its workspace and /tmp, both on the sandbox's own volume (volume.ts), the
 *   host directories the spec names (`mounts`: the agent's state read-write,
 *   the agent CLIs read-only), and nothing else writable (the root is
 *   remounted read-only);
 * - /run/umbra/conf (read-only: the agent sandbox's description and seccomp
 *   filter), /run/umbra/sockets (the sidecar's socket, the egress socket) and
 *   /run/umbra/cgroup/<controller> (read-only: its cgroups' counters) — none
 *   of which the agent's sandbox mounts;
 * - its own user namespace, mapped onto the sandbox's unprivileged host uid:
 *   uid 1000 inside, no capabilities; the host's root is not mapped at all,
 *   so root-owned host files are "nobody's" inside;
 * - its own pid, ipc, uts, cgroup and network namespaces: host processes are
 *   invisible, the sandbox's pid 1 takes everything inside down with it, and
 *   the network is a loopback of its own (the egress proxy is the way out);
 * - a seccomp filter (seccomp.ts).
 *
 * No `--die-with-parent`: a sandbox must outlive a crashed server so that the
 * next server process finds it (vm.json) and saves its work. No `--setenv`:
 * the environment is passed to bwrap itself, and holds no secret.
 */
import { accessSync, constants, lstatSync, readlinkSync, realpathSync } from "node:fs";
import { delimiter, dirname, join, sep } from "node:path";
import type { VmMount } from "../types";

const SYSTEM_PATHS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"];

/** The fd bwrap writes its JSON info (with the sandbox init's host pid) to. */
export const INFO_FD = 3;
/** The fd the sidecar reads its token from (a pipe the provider writes once and closes). */
export const TOKEN_FD = 4;
/** The fd bwrap reads the sandbox's seccomp filter from. */
export const SECCOMP_FD = 5;
/**
 * Where a root server's launcher re-mounts, in a mount namespace of its own,
 * the directories bound into the sandbox: bubblewrap already runs as the
 * sandbox's unprivileged uid, which may not traverse the path above them
 * (DATA_DIR is often private to root, e.g. under /root).
 */
export const STAGE_DIR = "/run/umbra-stage";

/** User and group id of the sandbox's processes inside their user namespace. */
export const SANDBOX_UID = 1000;

/** Where the sandbox's own directories appear inside it. */
export const INSIDE = {
  conf: "/run/umbra/conf",
  sockets: "/run/umbra/sockets",
  cgroup: "/run/umbra/cgroup",
  /** The sidecar bundle; a confined sidecar's command line names it here, not at its host path. */
  sidecar: "/run/umbra/sidecar.mjs",
} as const;

/** Absolute path of `command` on PATH, or null. */
export function findOnPath(command: string, path = process.env.PATH ?? ""): string | null {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}${sep}`);
}

/** Mounts for the system directories that exist here, keeping merged-/usr symlinks as symlinks. */
function systemMounts(): string[] {
  const args: string[] = [];
  for (const path of SYSTEM_PATHS) {
    let entry: ReturnType<typeof lstatSync>;
    try {
      entry = lstatSync(path);
    } catch {
      continue;
    }
    if (entry.isSymbolicLink()) args.push("--symlink", readlinkSync(path), path);
    else if (entry.isDirectory()) args.push("--ro-bind", path, path);
  }
  return args;
}

/** node's installation directory when it lives outside the system directories (nvm, a tarball), else null. */
function nodePrefix(nodePath: string): string | null {
  const node = realpathSync(nodePath);
  const systemDirs = SYSTEM_PATHS.filter((path) => {
    try {
      return lstatSync(path).isDirectory();
    } catch {
      return false;
    }
  });
  return systemDirs.some((dir) => isUnder(node, realpathSync(dir))) ? null : dirname(dirname(node));
}

/**
 * Read-only mounts of the programs a sandbox runs: the system directories and
 * node's installation when it lives elsewhere. This is the agent's sandbox's
 * view, inside the sandbox, where all of them are visible by path.
 */
export function programMounts(nodePath: string): string[] {
  const prefix = nodePrefix(nodePath);
  return [...systemMounts(), ...(prefix ? ["--ro-bind", prefix, prefix] : [])];
}

export interface BubblewrapSpec {
  /** The workspace's path, the same inside and on the host (where it is a link into the volume). */
  workspace: string;
  /** The volume's directories that back the workspace and /tmp. */
  volume: { workspace: string; tmp: string };
  /** The sandbox's read-only configuration directory and its sockets directory. */
  confDir: string;
  socketsDir: string;
  /** cgroup directories whose counters the sidecar reads, by controller. */
  cgroupDirs: Record<string, string>;
  bundlePath: string;
  nodePath: string;
  /** Load the seccomp filter from SECCOMP_FD. */
  seccomp: boolean;
  /** Extra host directories, bound after /tmp and the workspace so that neither hides them. */
  mounts?: VmMount[];
}

/** Mounts of the spec's host directories as the agent's sandbox (inside this one) binds them: at their targets. */
export function agentBoxMounts(mounts: VmMount[]): string[] {
  return mounts.flatMap((mount) => [mount.writable ? "--bind" : "--ro-bind", mount.target, mount.target]);
}

export interface BubblewrapCommand {
  /** Arguments up to (not including) the command to run. */
  args: string[];
  /** Host paths the launcher stages at `${STAGE_DIR}/<index>` (when `staged`). */
  bindSources: string[];
}

/**
 * The bubblewrap arguments of a sandbox. With `staged`, the sandbox's own
 * directories are bound from their staged copies (see STAGE_DIR).
 */
export function bubblewrapArgs(spec: BubblewrapSpec, staged: boolean): BubblewrapCommand {
  const bindSources: string[] = [];
  const bind = (kind: "--bind" | "--ro-bind", source: string, dest: string) => {
    if (!staged) return [kind, source, dest];
    bindSources.push(source);
    return [kind, `${STAGE_DIR}/${bindSources.length - 1}`, dest];
  };
  const bundle = realpathSync(spec.bundlePath);
  const prefix = nodePrefix(spec.nodePath);
  const cgroupMounts = Object.entries(spec.cgroupDirs).flatMap(([controller, dir]) => [
    "--ro-bind",
    dir,
    `${INSIDE.cgroup}/${controller}`,
  ]);
  const args = [
    "--unshare-user",
    "--uid",
    String(SANDBOX_UID),
    "--gid",
    String(SANDBOX_UID),
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-net",
    "--unshare-cgroup-try",
    "--new-session",
    "--cap-drop",
    "ALL",
    "--hostname",
    "umbra-sandbox",
    ...systemMounts(),
    ...(prefix ? bind("--ro-bind", prefix, prefix) : []),
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    ...bind("--bind", spec.volume.tmp, "/tmp"),
    ...bind("--ro-bind", bundle, INSIDE.sidecar),
    ...bind("--bind", spec.volume.workspace, spec.workspace),
    ...bind("--ro-bind", spec.confDir, INSIDE.conf),
    ...bind("--bind", spec.socketsDir, INSIDE.sockets),
    ...cgroupMounts,
    ...(spec.mounts ?? []).flatMap((mount) =>
      bind(mount.writable ? "--bind" : "--ro-bind", mount.source, mount.target),
    ),
    "--remount-ro",
    "/",
    "--chdir",
    spec.workspace,
    ...(spec.seccomp ? ["--seccomp", String(SECCOMP_FD)] : []),
    "--info-fd",
    String(INFO_FD),
  ];
  return { args, bindSources };
}
