/**
 * VM providers: where a remote task's sandbox comes from. The remote
 * workspace manager only sees this interface; `execution/index.ts` picks the
 * implementation from VM_PROVIDER.
 *
 * A sandbox runs the sidecar (apps/sidecar) with its workspace directory and
 * the per-VM token; the server reaches it at `endpoint` (an http:// base URL,
 * or `unix:<path>` for a sandbox on this host).
 */
import type { NetworkPolicy } from "./egress/egress-policy";

export interface VmSpec {
  taskId: string;
  /** Per-VM bearer token the sidecar will require. Never log it. */
  token: string;
  /** Labels stored with the sandbox so that orphans can be found (always include umbra.task-id). */
  labels: Record<string, string>;
  /** This sandbox's egress policy (a repository's environment); default: the provider's. */
  network?: NetworkPolicy;
}

export interface VmHandle {
  provider: string;
  /** Provider-specific id: a process id record, a pod name. */
  externalId: string;
  /** Where the sidecar listens: `unix:/…/sidecar.sock` (process) or `http://10.0.0.7:8080` (kubernetes). */
  endpoint: string;
}

export type VmState = "starting" | "running" | "exited" | "missing";

export interface VmStatus {
  state: VmState;
  /** What the provider saw, for error messages (exit code, pod phase, ...). */
  detail?: string;
}

export interface VmListing {
  externalId: string;
  labels: Record<string, string>;
  endpoint?: string;
}

/** The subset of a pino logger the providers use. */
export interface ProviderLogger {
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
  child(bindings: Record<string, unknown>): ProviderLogger;
}

export interface VmProvider {
  readonly name: "process" | "kubernetes";
  /** Starts a sandbox; returns once it is created (not necessarily ready). */
  create(spec: VmSpec): Promise<VmHandle>;
  status(externalId: string): Promise<VmStatus>;
  /** Destroys the sandbox and everything it holds. Idempotent: a missing sandbox is not an error. */
  destroy(externalId: string): Promise<void>;
  /** Sandboxes carrying all of these labels, including ones started by an earlier server process. */
  list(labels: Record<string, string>): Promise<VmListing[]>;
  /** Releases provider resources (watchers, clients). Does not destroy sandboxes. */
  close?(): Promise<void>;
}

export const UMBRA_LABELS = {
  managedBy: "app.kubernetes.io/managed-by",
  taskId: "umbra.dev/task-id",
} as const;
export const UMBRA_MANAGED_BY = "umbra";
