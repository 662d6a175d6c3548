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
 *   status and the API server's message;
 * - the egress proxy (serveEgress) lets a connection through only when its
 *   source address is the podIP of exactly one live pod this provider
 *   manages, under the policy that pod was created with; anything else
 *   (an unknown address, a pod being deleted, an unreadable policy, an API
 *   failure) is refused.
 */
import type { AddressInfo } from "node:net";
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
import { defaultAllowedDomains, type NetworkPolicy } from "../egress/egress-policy";
import { type EgressDenial, EgressProxy, type HostLookup } from "../egress/egress-proxy";
import {
  type ProviderLogger,
  type SandboxAgents,
  UMBRA_LABELS,
  type VmHandle,
  type VmListing,
  type VmProvider,
  type VmSpec,
  type VmStatus,
} from "../types";
import { callApi, callApiAllowMissing } from "./errors";
import {
  AGENT_HOME_PATH,
  IMAGE_AGENT_BINARIES,
  labelSelector,
  podNetworkPolicy,
  sandboxLabels,
  sandboxName,
  sidecarPod,
  tokenSecret,
} from "./manifests";
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
   * What a pod may reach through the egress proxy when its VmSpec names no
   * policy. Default: the allowlist of the package registries.
   */
  network?: NetworkPolicy;
  /** Called for every connection the egress proxy refuses (the server shows it on the task). */
  onEgressDenied?: (denial: EgressDenial) => void;
  /** Resolves host names for the egress proxy. Default: the system resolver. */
  egressLookup?: HostLookup;
  /**
   * Milliseconds the egress proxy keeps its answer to "which pod is this
   * address" (one API lookup per burst of connections, not per connection).
   * Default `2000`; `0` looks up every connection.
   */
  egressClientCacheMs?: number;
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
  /**
   * Where the agent CLIs are in the image (CLAUDE_CODE_BIN / CODEX_BIN in
   * kubernetes mode). Default: where apps/sidecar/Dockerfile installs them,
   * `/opt/umbra/bin/claude` and `/opt/umbra/bin/codex`.
   */
  agentBinaries?: { claudeCode?: string; codex?: string };
}

const DEFAULT_REQUESTS = { cpu: "250m", memory: "512Mi" };
const DEFAULT_LIMITS = { cpu: "2", memory: "2Gi" };
const NAME_PREFIX = "umbra-vm-";
/**
 * How long the egress proxy trusts its answer to "which task is this
 * address" by default. A pod's address is not reused while the pod exists,
 * so the only window in which a reused address could borrow a deleted pod's
 * policy is this short one after the deletion.
 */
const DEFAULT_CLIENT_CACHE_MS = 2_000;

type EgressClient = { taskId: string; policy: NetworkPolicy } | null;

/** `::ffff:10.1.2.3` (an IPv4 client of a dual-stack listener) as the pod's address `10.1.2.3`. */
function plainAddress(address: string): string {
  return address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "");
}

const silentLogger: ProviderLogger = {
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};

function endpointFor(podIP: string, port: number): string {
  return podIP.includes(":") ? `http://[${podIP}]:${port}` : `http://${podIP}:${port}`;
}

function definedOnly<T extends object>(values: T): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined)) as Partial<T>;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new WorkspaceError(`kubernetes provider: ${name} must be a positive integer, got ${value}`, null, false);
  }
  return value;
}

export class KubernetesVmProvider implements VmProvider {
  readonly name = "kubernetes" as const;
  /** A pod cannot see the server's disk: agent state travels as an archive through the sidecar. */
  readonly hostMounts = false;
  readonly sandboxAgents: SandboxAgents;

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
  private readonly network: NetworkPolicy;
  private readonly egress: EgressProxy;
  private readonly egressClients = new Map<string, { client: Promise<EgressClient>; until: number }>();
  private readonly egressClientCacheMs: number;

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
    this.network = options.network ?? { mode: "allowlist", allowedDomains: defaultAllowedDomains({}) };
    this.egress = new EgressProxy({ logger: this.log, onDenied: options.onEgressDenied, lookup: options.egressLookup });
    this.egressClientCacheMs = options.egressClientCacheMs ?? DEFAULT_CLIENT_CACHE_MS;
    this.sandboxAgents = {
      home: AGENT_HOME_PATH,
      binaries: { ...IMAGE_AGENT_BINARIES, ...definedOnly(options.agentBinaries ?? {}) },
    };
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
    if (spec.mounts?.length) throw new WorkspaceError("pods cannot mount the server's directories", null, false);
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
        network: spec.network ?? this.network,
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

  /**
   * Serves the pods' egress proxy on TCP `port` of `host` (the target of the
   * umbra-egress Service, deploy/kubernetes/networkpolicy.yaml). Each
   * connection is attributed to a task by its source address: the pod with
   * that podIP, whichever replica created it, under the policy it carries.
   */
  async serveEgress(port: number, host: string): Promise<AddressInfo> {
    const server = await this.egress.listenTcp(port, host, (address) => this.egressClient(plainAddress(address)));
    const address = server.address() as AddressInfo;
    this.log.info({ host: address.address, port: address.port }, "kubernetes.egress.listening");
    return address;
  }

  /** Stops in-flight waits and the egress proxy. Sandboxes keep running; list() finds them again later. */
  async close(): Promise<void> {
    this.closing.abort();
    await this.egress.close();
  }

  /** The task and policy of the one live sandbox pod at `address`, looked up at most once per egressClientCacheMs. */
  private egressClient(address: string): Promise<EgressClient> {
    const now = performance.now();
    const cached = this.egressClients.get(address);
    if (cached && cached.until > now) return cached.client;
    for (const [key, entry] of this.egressClients) if (entry.until <= now) this.egressClients.delete(key);
    const client = this.findEgressClient(address);
    const entry = { client, until: now + this.egressClientCacheMs };
    this.egressClients.set(address, entry);
    // A refusal is not remembered: the next connection asks again.
    void client.then((found) => {
      if (found === null && this.egressClients.get(address) === entry) this.egressClients.delete(address);
    });
    return client;
  }

  private async findEgressClient(address: string): Promise<EgressClient> {
    try {
      const pods = await callApi(`list pods at ${address} in namespace ${this.namespace}`, () =>
        this.core.listNamespacedPod({
          namespace: this.namespace,
          labelSelector: labelSelector({}),
          fieldSelector: `status.podIP=${address}`,
        }),
      );
      const live = pods.items.filter(
        (pod) =>
          !pod.metadata?.deletionTimestamp && (pod.status?.phase === "Pending" || pod.status?.phase === "Running"),
      );
      if (live.length !== 1) return null;
      const pod = live[0]!;
      const taskId = pod.metadata?.labels?.[UMBRA_LABELS.taskId];
      const policy = podNetworkPolicy(pod, this.network);
      if (!taskId || !policy) {
        this.log.warn({ pod: pod.metadata?.name }, "kubernetes.egress.unattributable");
        return null;
      }
      return { taskId, policy };
    } catch (error) {
      this.log.warn({ err: error, address }, "kubernetes.egress.lookup_failed");
      return null;
    }
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
