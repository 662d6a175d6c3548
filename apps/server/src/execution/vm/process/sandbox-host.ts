/**
 * What this host can enforce for process-provider sandboxes, found once when
 * the provider starts: bubblewrap, a per-sandbox host uid (needs root and
 * setpriv), seccomp (needs a syscall table for this architecture), cgroup
 * limits (cgroups.ts) and the disk limit (volume.ts).
 *
 * Invariant: everything that cannot be enforced is said loudly — one warning
 * per missing protection, naming the setting it defeats and why — once per
 * process, at start-up; a sandbox then starts without it rather than not at
 * all, as an unconfined sandbox always has.
 */
import type { ProviderLogger } from "../types";
import { findOnPath } from "./bubblewrap";
import { type CgroupSupport, type Controller, detectCgroups } from "./cgroups";
import { seccompSupported } from "./seccomp";
import { detectVolumeSupport, type VolumeSupport } from "./volume";

export interface HostSupport {
  /** bwrap's path, when sandboxes are confined. */
  bwrap: string | null;
  /** setpriv's path, when sandboxes get a uid of their own (the server is root). */
  setpriv: string | null;
  /** unshare's path (util-linux), for the launcher's private mount namespace; set with setpriv. */
  unshare: string | null;
  seccomp: boolean;
  cgroups: CgroupSupport;
  volume: VolumeSupport;
}

const SEARCH_PATH = `${process.env.PATH ?? ""}:/usr/sbin:/sbin:/usr/bin:/bin`;

export function detectHostSupport(useBubblewrap: boolean | undefined): HostSupport {
  const bwrap = useBubblewrap === false ? null : findOnPath("bwrap", SEARCH_PATH);
  if (!bwrap) {
    return {
      bwrap: null,
      setpriv: null,
      unshare: null,
      seccomp: false,
      cgroups: { controllers: {}, missing: {} },
      volume: { enforced: false, reason: "sandboxes are not confined" },
    };
  }
  const isRoot = process.getuid?.() === 0;
  const setpriv = isRoot ? findOnPath("setpriv", SEARCH_PATH) : null;
  const unshare = isRoot ? findOnPath("unshare", SEARCH_PATH) : null;
  return {
    bwrap,
    setpriv: setpriv && unshare ? setpriv : null,
    unshare: setpriv && unshare ? unshare : null,
    seccomp: seccompSupported(),
    cgroups: detectCgroups(),
    volume: detectVolumeSupport(),
  };
}

const SETTING: Record<Controller, string> = { memory: "SANDBOX_MEMORY_MB", pids: "SANDBOX_PIDS", cpu: "SANDBOX_CPUS" };
const warned = new Set<string>();

function warnOnce(log: ProviderLogger, key: string, fields: object, message: string): void {
  if (warned.has(key)) return;
  warned.add(key);
  log.warn(fields, message);
}

/** Warns about every protection this host lacks (once per process for each). */
export function reportHostSupport(host: HostSupport, log: ProviderLogger): void {
  if (!host.bwrap) {
    warnOnce(
      log,
      "unsandboxed",
      { hint: "install bubblewrap (bwrap) to confine sandboxes" },
      "UNSANDBOXED: remote workspaces run as plain processes that can read and write all of this host's files",
    );
    return;
  }
  if (!host.setpriv) {
    warnOnce(
      log,
      "uid",
      {
        reason:
          process.getuid?.() === 0 ? "setpriv or unshare (util-linux) is not installed" : "the server is not root",
      },
      "SANDBOX UID NOT SEPARATE: every sandbox runs as the server's own user",
    );
  }
  if (!host.seccomp) {
    warnOnce(
      log,
      "seccomp",
      { arch: process.arch },
      "SECCOMP NOT ENFORCED: no system call table for this architecture",
    );
  }
  for (const [controller, reason] of Object.entries(host.cgroups.missing) as [Controller, string][]) {
    warnOnce(
      log,
      `cgroup:${controller}`,
      { setting: SETTING[controller], reason },
      `LIMIT NOT ENFORCED: ${SETTING[controller]} (${controller} cgroup): ${reason}`,
    );
  }
  if (host.cgroups.weightProblem) {
    warnOnce(
      log,
      "cpu-weight",
      { reason: host.cgroups.weightProblem },
      `SANDBOX CPU PRIORITY NOT LOWERED: busy sandboxes compete with the server on equal terms (${host.cgroups.weightProblem})`,
    );
  }
  if (!host.volume.enforced) {
    warnOnce(
      log,
      "disk",
      { setting: "SANDBOX_DISK_MB", reason: host.volume.reason },
      `LIMIT NOT ENFORCED: SANDBOX_DISK_MB: ${host.volume.reason}; /tmp and the workspace share the host's disk`,
    );
  }
}
