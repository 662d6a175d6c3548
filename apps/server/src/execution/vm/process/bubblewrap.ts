/**
 * The bubblewrap command line that confines one sidecar.
 *
 * What the sandbox sees, and why:
 * - the system's programs and libraries (/usr and friends, /etc) read-only, so
 *   git, sh and node run; the rest of the host's files (other workspaces, the
 *   database, home directories) do not exist inside;
 * - the sidecar bundle and the node binary read-only;
 * - its own workspace read-write, a private tmpfs on /tmp, the host
 *   directories the spec names (`mounts`: the agent's state read-write, the
 *   agent CLIs read-only), and nothing else writable (the root is remounted
 *   read-only);
 * - its own pid, ipc and uts namespaces: host processes are invisible and the
 *   sandbox's pid 1 takes everything inside down with it when it dies;
 * - the host's network, but the sidecar binds 127.0.0.1 only.
 *
 * No `--die-with-parent`: a sandbox must outlive a crashed server so that the
 * next server process finds it (vm.json) and saves its work. No `--setenv`:
 * the environment is passed to bwrap itself, which keeps the token out of
 * every process's command line.
 */
import { accessSync, constants, lstatSync, readlinkSync, realpathSync } from "node:fs";
import { delimiter, dirname, join, sep } from "node:path";
import type { VmMount } from "../types";

const SYSTEM_PATHS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"];

/** The fd bwrap writes its JSON info (with the sandbox init's host pid) to. */
export const INFO_FD = 3;

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

export interface BubblewrapSpec {
  workspace: string;
  bundlePath: string;
  nodePath: string;
  /** Extra host directories, bound after /tmp and the workspace so that neither hides them. */
  mounts?: VmMount[];
}

function extraMounts(mounts: VmMount[]): string[] {
  return mounts.flatMap((mount) => [mount.writable ? "--bind" : "--ro-bind", mount.source, mount.target]);
}

/** Arguments for `bwrap` up to (not including) the command to run. */
export function bubblewrapArgs(spec: BubblewrapSpec): string[] {
  const node = realpathSync(spec.nodePath);
  const bundle = realpathSync(spec.bundlePath);
  const mounts = systemMounts();
  const systemDirs = SYSTEM_PATHS.filter((path) => mounts.includes(path));
  // A node installed outside the system directories (nvm, a tarball): bind its whole prefix.
  const nodeMount = systemDirs.some((dir) => isUnder(node, realpathSync(dir)))
    ? []
    : ["--ro-bind", dirname(dirname(node)), dirname(dirname(node))];
  return [
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--new-session",
    "--hostname",
    "umbra-sandbox",
    ...mounts,
    ...nodeMount,
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--tmpfs",
    "/tmp",
    "--ro-bind",
    bundle,
    bundle,
    "--bind",
    spec.workspace,
    spec.workspace,
    ...extraMounts(spec.mounts ?? []),
    "--remount-ro",
    "/",
    "--chdir",
    spec.workspace,
    "--info-fd",
    String(INFO_FD),
  ];
}
