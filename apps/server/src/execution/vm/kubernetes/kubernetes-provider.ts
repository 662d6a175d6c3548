/**
 * The `kubernetes` VM provider: one Pod per task, running the sidecar image,
 * created through the Kubernetes API. For fleets larger than one machine; the
 * `runtimeClassName` (default `kata-fc`, Kata Containers on Firecracker) puts
 * each pod in its own micro-VM.
 *
 * Order of creation, and why: Secret first, then Pod, then the Secret is
 * patched to be owned by the Pod. The container reads its token from the
 * Secret, so creating the Secret first means the kubelet never meets a missing
 * Secret (which it reports as CreateContainerConfigError and retries with
 * back-off, delaying the start). The owner reference, added once the Pod's uid
 * exists, lets the garbage collector remove the Secret with the Pod even if
 * nobody calls destroy(); destroy() deletes both explicitly anyway.
 *
 * Invariants:
 * - the token is only ever sent inside the Secret: never in the pod spec, a
 *   log line or an error message;
 * - a create() that fails removes whatever it had created before throwing;
 * - a server that crashed between creating the Secret and the Pod leaves a
 *   Secret that list() still reports (same name, same labels), so orphan
 *   clean-up through destroy() removes it;
 * - destroy() is idempotent: objects that are already gone are not errors;
 * - every API failure surfaces as a `KubernetesApiError` carrying the HTTP
 *   status and the API server's message.
 */
import { setTimeout as sleep } from "node:timers/promises";
import {
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
  type V1ResourceRequirements,
} from "@kubernetes/client-node";
import { WorkspaceError } from "../../../errors";
import type { ProviderLogger, VmHandle, VmListing, VmProvider, VmSpec, VmStatus } from "../types";
import { callApi, callApiAllowMissing } from "./errors";
import { labelSelector, sandboxLabels, sandboxName, sidecarPod, tokenSecret } from "./manifests";
import { podVmStatus } from "./pod-status";

export { KubernetesApiError } from "./errors";

/** CPU and memory quantities in Kubernetes notation, e.g. `{ cpu: "250m", memory: "512Mi" }`. */
export interface ResourceQuantities {
  cpu?: string;
  memory?: string;
}

export interface KubernetesVmProviderOptions {
  /**
   * Cluster connection and credentials.
   * Default: `KubeConfig.loadFromDefault()` — `$KUBECONFIG`, `~/.kube/config`,
   * or the pod's service account when the server runs in the cluster.
   */
  kubeConfig?: KubeConfig;
  /** Namespace holding the sandbox pods and their token secrets. Default `"umbra"`. */
  namespace?: string;
  /** Sidecar container image. Default `"umbra-sidecar:latest"`. */
  image?: string;
  /**
   * RuntimeClass of sandbox pods. Default `"kata-fc"`. `null` or `""` leaves
   * the field unset, so pods use the cluster's default runtime.
   */
  runtimeClassName?: string | null;
  /**
   * Container resources; fields given replace the defaults one by one.
   * Default requests `{ cpu: "250m", memory: "512Mi" }`, limits `{ cpu: "2", memory: "2Gi" }`.
   */
  resources?: { requests?: ResourceQuantities; limits?: ResourceQuantities };
  /** TCP port the sidecar listens on inside the pod. Default `8080`. */
  sidecarPort?: number;
  /** Numeric uid and gid the sidecar runs as (the pod refuses root). Default `1000`. */
  runAsUser?: number;
  /**
   * The egress proxy sandbox pods send their traffic through (HTTP_PROXY and
   * friends), e.g. `http://10.96.0.40:3128` — a cluster IP, so pods need no
   * DNS. Default: none (the pods' network is then only what the NetworkPolicy allows).
   */
  egressProxyUrl?: string;
  /**
   * Milliseconds create() waits for the pod to be scheduled and get an IP
   * address. The IP comes with the pod sandbox, before the image is pulled, so
   * readiness of the sidecar itself is left to the caller's health check.
   * Default `120000`.
   */
  readyTimeoutMs?: number;
  /** Milliseconds between pod reads while create() waits. Default `500`. */
  pollIntervalMs?: number;
  /** Seconds the sidecar gets to stop when its pod is deleted. Default `5`. */
  deleteGracePeriodSeconds?: number;
  /** Structured logger (pino-compatible). Default: discards everything. */
  logger?: ProviderLogger;
}

const DEFAULT_REQUESTS = { cpu: "250m", memory: "512Mi" };
const DEFAULT_LIMITS = { cpu: "2", memory: "2Gi" };
const NAME_PREFIX = "umbra-vm-";

const silentLogger: ProviderLogger = {
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};

function endpointFor(podIP: string, port: number): string {
  return podIP.includes(":") ? `http://[${podIP}]:${port}` : `http://${podIP}:${port}`;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new WorkspaceError(`kubernetes provider: ${name} must be a positive integer, got ${value}`, null, false);
  }
  return value;
}

export class KubernetesVmProvider implements VmProvider {
  readonly name = "kubernetes" as const;

  private readonly core: CoreV1Api;
  private readonly namespace: string;
  private readonly image: string;
  private readonly runtimeClassName: string | null;
  private readonly resources: V1ResourceRequirements;
  private readonly sidecarPort: number;
  private readonly runAsUser: number;
  private readonly egressProxyUrl: string | null;
  private readonly readyTimeoutMs: number;
  private readonly pollIntervalMs: number;
  private readonly deleteGracePeriodSeconds: number;
  private readonly log: ProviderLogger;
  private readonly closing = new AbortController();

  constructor(options: KubernetesVmProviderOptions = {}) {
    const kubeConfig = options.kubeConfig ?? KubernetesVmProvider.defaultKubeConfig();
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.namespace = options.namespace ?? "umbra";
    this.image = options.image ?? "umbra-sidecar:latest";
    this.runtimeClassName = options.runtimeClassName === undefined ? "kata-fc" : options.runtimeClassName || null;
    this.resources = {
      requests: { ...DEFAULT_REQUESTS, ...options.resources?.requests },
      limits: { ...DEFAULT_LIMITS, ...options.resources?.limits },
    };
    this.sidecarPort = positiveInteger("sidecarPort", options.sidecarPort ?? 8080);
    this.runAsUser = positiveInteger("runAsUser", options.runAsUser ?? 1000);
    this.egressProxyUrl = options.egressProxyUrl ?? null;
    this.readyTimeoutMs = positiveInteger("readyTimeoutMs", options.readyTimeoutMs ?? 120_000);
    this.pollIntervalMs = positiveInteger("pollIntervalMs", options.pollIntervalMs ?? 500);
    this.deleteGracePeriodSeconds = options.deleteGracePeriodSeconds ?? 5;
    this.log = (options.logger ?? silentLogger).child({ provider: "kubernetes", namespace: this.namespace });
  }

  private static defaultKubeConfig(): KubeConfig {
    const config = new KubeConfig();
    config.loadFromDefault();
    return config;
  }

  /** Creates the token Secret and the sidecar Pod; resolves once the pod has an IP address. */
  async create(spec: VmSpec): Promise<VmHandle> {
    if (this.closing.signal.aborted) throw new WorkspaceError("kubernetes provider is closed", null, false);
    if (!spec.token) throw new WorkspaceError("refusing to start a sidecar without a token", null, false);
    const name = sandboxName(spec.taskId);
    const labels = sandboxLabels(spec.taskId, spec.labels);
    const log = this.log.child({ taskId: spec.taskId, pod: name });
    const namespace = this.namespace;

    await callApi(`create secret ${name} in namespace ${namespace}`, () =>
      this.core.createNamespacedSecret({ namespace, body: tokenSecret(name, namespace, labels, spec.token) }),
    );
    try {
      const body = sidecarPod(name, labels, {
        namespace,
        image: this.image,
        runtimeClassName: this.runtimeClassName,
        resources: this.resources,
        sidecarPort: this.sidecarPort,
        runAsUser: this.runAsUser,
        egressProxyUrl: this.egressProxyUrl,
      });
      const pod = await callApi(`create pod ${name} in namespace ${namespace}`, () =>
        this.core.createNamespacedPod({ namespace, body }),
      );
      log.info({ image: this.image, runtimeClassName: this.runtimeClassName }, "kubernetes.pod.created");
      await this.makeSecretOwnedBy(pod);
      const podIP = await this.waitForPodIP(name);
      const endpoint = endpointFor(podIP, this.sidecarPort);
      log.info({ podIP }, "kubernetes.pod.addressed");
      return { provider: this.name, externalId: name, endpoint };
    } catch (error) {
      log.warn({ err: error }, "kubernetes.create.failed");
      await this.destroy(name).catch((cleanupError: unknown) => {
        log.error({ err: cleanupError }, "kubernetes.create.cleanup_failed");
      });
      throw error;
    }
  }

  async status(externalId: string): Promise<VmStatus> {
    const pod = await callApiAllowMissing(`read pod ${externalId} in namespace ${this.namespace}`, () =>
      this.core.readNamespacedPod({ name: externalId, namespace: this.namespace }),
    );
    if (!pod) return { state: "missing", detail: "pod not found" };
    return podVmStatus(pod);
  }

  /** Deletes the pod and its token secret; either may already be gone. */
  async destroy(externalId: string): Promise<void> {
    if (!externalId.startsWith(NAME_PREFIX)) {
      throw new WorkspaceError(`refusing to delete ${externalId}: not a sandbox this provider created`, null, false);
    }
    const namespace = this.namespace;
    const results = await Promise.allSettled([
      callApiAllowMissing(`delete pod ${externalId} in namespace ${namespace}`, () =>
        this.core.deleteNamespacedPod({
          name: externalId,
          namespace,
          gracePeriodSeconds: this.deleteGracePeriodSeconds,
          propagationPolicy: "Background",
        }),
      ),
      callApiAllowMissing(`delete secret ${externalId} in namespace ${namespace}`, () =>
        this.core.deleteNamespacedSecret({ name: externalId, namespace }),
      ),
    ]);
    const failure = results.find((result) => result.status === "rejected");
    if (failure) throw failure.reason;
    this.log.info({ pod: externalId }, "kubernetes.pod.deleted");
  }

  /**
   * Sandboxes carrying all of `labels` (and managed by Umbra), from pods and
   * from token secrets whose pod never got created.
   */
  async list(labels: Record<string, string>): Promise<VmListing[]> {
    const namespace = this.namespace;
    const selector = labelSelector(labels);
    const [pods, secrets] = await Promise.all([
      callApi(`list pods in namespace ${namespace}`, () =>
        this.core.listNamespacedPod({ namespace, labelSelector: selector }),
      ),
      callApi(`list secrets in namespace ${namespace}`, () =>
        this.core.listNamespacedSecret({ namespace, labelSelector: selector }),
      ),
    ]);
    const listings = new Map<string, VmListing>();
    for (const pod of pods.items) {
      const name = pod.metadata?.name;
      if (!name) continue;
      const podIP = pod.status?.podIP;
      listings.set(name, {
        externalId: name,
        labels: { ...pod.metadata?.labels },
        ...(podIP ? { endpoint: endpointFor(podIP, this.sidecarPort) } : {}),
      });
    }
    for (const secret of secrets.items) {
      const name = secret.metadata?.name;
      if (!name || listings.has(name) || !name.startsWith(NAME_PREFIX)) continue;
      listings.set(name, { externalId: name, labels: { ...secret.metadata?.labels } });
    }
    return [...listings.values()].sort((a, b) => a.externalId.localeCompare(b.externalId));
  }

  /** Stops in-flight waits. Sandboxes keep running; list() finds them again later. */
  async close(): Promise<void> {
    this.closing.abort();
  }

  /** Adds the Pod as owner of its token Secret, so deleting the Pod garbage-collects the Secret. */
  private async makeSecretOwnedBy(pod: V1Pod): Promise<void> {
    const name = pod.metadata?.name;
    const uid = pod.metadata?.uid;
    if (!name || !uid) throw new WorkspaceError("the API returned a pod without name or uid", null, true);
    // No blockOwnerDeletion: setting it needs permission to update the pod's finalizers.
    const patch = [
      { op: "add", path: "/metadata/ownerReferences", value: [{ apiVersion: "v1", kind: "Pod", name, uid }] },
    ];
    await callApi(`patch secret ${name} in namespace ${this.namespace}`, () =>
      this.core.patchNamespacedSecret(
        { name, namespace: this.namespace, body: patch },
        setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
      ),
    );
  }

  /** Polls the pod until it has an IP address, ends, disappears, or the deadline passes. */
  private async waitForPodIP(name: string): Promise<string> {
    const deadline = performance.now() + this.readyTimeoutMs;
    for (;;) {
      const pod = await callApiAllowMissing(`read pod ${name} in namespace ${this.namespace}`, () =>
        this.core.readNamespacedPod({ name, namespace: this.namespace }),
      );
      if (!pod) throw new WorkspaceError(`pod ${name} disappeared before it got an IP address`, null, true);
      const state = podVmStatus(pod);
      if (state.state === "exited") {
        throw new WorkspaceError(`pod ${name} ended before it got an IP address (${state.detail})`, null, true);
      }
      const podIP = pod.status?.podIP;
      if (podIP) return podIP;
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        throw new WorkspaceError(
          `pod ${name} got no IP address within ${this.readyTimeoutMs} ms (${state.detail})`,
          null,
          true,
        );
      }
      try {
        await sleep(Math.min(this.pollIntervalMs, remaining), undefined, { signal: this.closing.signal });
      } catch {
        throw new WorkspaceError(`kubernetes provider closed while pod ${name} was starting`, null, true);
      }
    }
  }
}
