/**
 * The process provider's options and their defaults (SPEC §4: SANDBOX_*).
 */
import type { NetworkPolicy } from "../egress/egress-policy";
import type { EgressDenial, HostLookup } from "../egress/egress-proxy";
import type { ProviderLogger } from "../types";
import type { SandboxLimits } from "./sandbox-setup";

export type { SandboxLimits } from "./sandbox-setup";

export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = { memoryMb: 2048, pids: 512, cpus: 1, diskMb: 10240 };

export interface ProcessVmProviderOptions {
  /** Umbra's data directory; sandboxes live under `${dataDir}/vms/<taskId>/`. */
  dataDir: string;
  /** The built sidecar, `apps/sidecar/dist/sidecar.mjs` (see ensureSidecarBundle). */
  sidecarBundlePath: string;
  /** Confine sandboxes with bubblewrap. Default: true when `bwrap` is on PATH. */
  useBubblewrap?: boolean;
  logger: ProviderLogger;
  /** The node binary that runs the sidecar. Default: the server's own (process.execPath). */
  nodePath?: string;
  /** Milliseconds create() waits for the sidecar to listen. Default 30000 (a busy host starting several). */
  startTimeoutMs?: number;
  /** Milliseconds destroy() waits after SIGTERM before SIGKILL. Default 2000. */
  killGraceMs?: number;
  /** Every sandbox's egress policy unless its VmSpec names one. Default: allowlist of the vendors' API hosts and the package registries. */
  network?: NetworkPolicy;
  /** Per-sandbox limits (SANDBOX_MEMORY_MB, _PIDS, _CPUS, _DISK_MB). Default DEFAULT_SANDBOX_LIMITS. */
  limits?: Partial<SandboxLimits>;
  /** Hears every connection a sandbox's egress proxy refused (show "blocked: host" on the task). Must not throw. */
  onEgressDenied?: (denial: EgressDenial) => void;
  /** The egress proxy's name resolution. Default: the system resolver. */
  egressLookup?: HostLookup;
  /** First host uid given to sandboxes. Default 3000000. */
  uidBase?: number;
}
