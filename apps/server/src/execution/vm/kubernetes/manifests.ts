/**
 * The objects the kubernetes provider creates for one task: a Secret holding
 * the sidecar's token and a Pod running the sidecar, both named
 * `umbra-vm-<short task id>-<random>`.
 *
 * Invariants:
 * - the token appears only in the Secret; the Pod reads it through a
 *   `secretKeyRef`, so anyone allowed to read pods never sees it;
 * - every label key and value is valid for the API server (values at most 63
 *   characters of alphanumerics, `-`, `_`, `.`, starting and ending
 *   alphanumeric), and `app.kubernetes.io/managed-by=umbra` plus
 *   `umbra.dev/task-id` are always present and cannot be overridden;
 * - the Pod runs unprivileged: non-root, no privilege escalation, no
 *   capabilities, no service-account token, never restarted;
 * - the agent's state (its HOME) is a volume of its own at AGENT_HOME_PATH,
 *   outside the workspace, which the sidecar archives and restores
 *   (SIDECAR_AGENT_HOME);
 * - with an egress proxy configured, everything the agent runs is pointed at
 *   it (HTTP_PROXY and friends; the NetworkPolicy lets the pod reach nothing
 *   else, deploy/kubernetes/networkpolicy.yaml);
 * - the pod carries its network policy as an annotation, so whichever server
 *   replica a connection to the proxy reaches applies the policy the task
 *   was created with (podNetworkPolicy reads it back). A sandbox cannot
 *   change it: the pod has no service-account token.
 */
import { randomBytes } from "node:crypto";
import type { V1Pod, V1ResourceRequirements, V1Secret } from "@kubernetes/client-node";
import { z } from "zod";
import { WorkspaceError } from "../../../errors";
import { NETWORK_MODES, type NetworkPolicy } from "../egress/egress-policy";
import { UMBRA_LABELS, UMBRA_MANAGED_BY } from "../types";

export const SECRET_TOKEN_KEY = "token";
/** The annotation holding the pod's network policy (JSON). */
export const NETWORK_POLICY_ANNOTATION = "umbra.dev/network-policy";
export const CONTAINER_NAME = "sidecar";
export const WORKSPACE_PATH = "/workspace";
/** The agent CLIs' HOME inside the pod. */
export const AGENT_HOME_PATH = "/agent-state";
/** Where apps/sidecar/Dockerfile installs the agent CLIs. */
export const IMAGE_AGENT_BINARIES = { claudeCode: "/opt/umbra/bin/claude", codex: "/opt/umbra/bin/codex" };

const LABEL_VALUE_MAX = 63;
const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export interface PodSettings {
  namespace: string;
  image: string;
  runtimeClassName: string | null;
  resources: V1ResourceRequirements;
  sidecarPort: number;
  runAsUser: number;
  /** The in-cluster egress proxy, e.g. `http://10.96.0.40:3128`; null sets no proxy variables. */
  egressProxyUrl: string | null;
  /** What the proxy lets this pod reach. */
  network: NetworkPolicy;
}

const StoredPolicy = z.object({
  mode: z.enum(NETWORK_MODES),
  allowedDomains: z.array(z.string().max(300)).max(1000),
});

/**
 * The network policy a pod was created with; `fallback` for a pod that
 * carries none (made by a server that did not annotate), null for one whose
 * annotation cannot be read (refused rather than guessed).
 */
export function podNetworkPolicy(pod: V1Pod, fallback: NetworkPolicy): NetworkPolicy | null {
  const text = pod.metadata?.annotations?.[NETWORK_POLICY_ANNOTATION];
  if (text === undefined) return fallback;
  try {
    const parsed = StoredPolicy.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** The proxy variables every program in the pod reads (both spellings: tools differ). */
export function proxyEnv(url: string | null): { name: string; value: string }[] {
  if (!url) return [];
  const local = "localhost,127.0.0.1,::1";
  return [
    ...["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"].map((name) => ({ name, value: url })),
    { name: "NO_PROXY", value: local },
    { name: "no_proxy", value: local },
  ];
}

/** A pod and secret name for a task: DNS-1123 label, short enough to be a hostname. */
export function sandboxName(taskId: string): string {
  const short = taskId
    .toLowerCase()
    .replace(/[^a-z0-9]/g, "")
    .slice(0, 8);
  return `umbra-vm-${short || "task"}-${randomBytes(3).toString("hex")}`;
}

/**
 * Turns any string into a valid label value, deterministically, so that the
 * same input always selects the same objects. Characters the API refuses
 * become `-`; the result is cut to 63 characters and trimmed to start and end
 * alphanumeric.
 */
export function toLabelValue(value: string): string {
  return value
    .replace(/[^A-Za-z0-9_.-]/g, "-")
    .slice(0, LABEL_VALUE_MAX)
    .replace(/^[^A-Za-z0-9]+/, "")
    .replace(/[^A-Za-z0-9]+$/, "");
}

/** Whether `key` is a valid label key: `[prefix/]name`, prefix a DNS subdomain. */
export function isValidLabelKey(key: string): boolean {
  const slash = key.lastIndexOf("/");
  const prefix = slash === -1 ? null : key.slice(0, slash);
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (name.length === 0 || name.length > LABEL_VALUE_MAX || !LABEL_NAME.test(name)) return false;
  return prefix === null || (prefix.length <= 253 && DNS_SUBDOMAIN.test(prefix));
}

function assertLabelKey(key: string): void {
  if (!isValidLabelKey(key))
    throw new WorkspaceError(`invalid kubernetes label key ${JSON.stringify(key)}`, null, false);
}

/**
 * The caller's labels made valid, plus the two labels the provider owns. An
 * invalid key is a programming error, so it throws instead of being rewritten.
 */
export function sandboxLabels(taskId: string, labels: Record<string, string>): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [key, value] of Object.entries(labels)) {
    assertLabelKey(key);
    result[key] = toLabelValue(value);
  }
  result[UMBRA_LABELS.managedBy] = UMBRA_MANAGED_BY;
  result[UMBRA_LABELS.taskId] = toLabelValue(taskId);
  return result;
}

/** An equality label selector (`k=v,k2=v2`) matching everything this provider manages with these labels. */
export function labelSelector(labels: Record<string, string>): string {
  const wanted: Record<string, string> = {};
  for (const [key, value] of Object.entries(labels)) {
    assertLabelKey(key);
    wanted[key] = toLabelValue(value);
  }
  wanted[UMBRA_LABELS.managedBy] = UMBRA_MANAGED_BY;
  return Object.entries(wanted)
    .map(([key, value]) => `${key}=${value}`)
    .join(",");
}

export function tokenSecret(name: string, namespace: string, labels: Record<string, string>, token: string): V1Secret {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name, namespace, labels },
    type: "Opaque",
    // Immutable: the kubelet stops watching it, and nobody can swap the token under a running sandbox.
    immutable: true,
    data: { [SECRET_TOKEN_KEY]: Buffer.from(token, "utf8").toString("base64") },
  };
}

export function sidecarPod(name: string, labels: Record<string, string>, settings: PodSettings): V1Pod {
  const port = settings.sidecarPort;
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: settings.namespace,
      labels,
      annotations: { [NETWORK_POLICY_ANNOTATION]: JSON.stringify(settings.network) },
    },
    spec: {
      ...(settings.runtimeClassName ? { runtimeClassName: settings.runtimeClassName } : {}),
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      // Service discovery variables would tell the agent about every service in the namespace.
      enableServiceLinks: false,
      securityContext: {
        runAsNonRoot: true,
        // Explicit ids: runAsNonRoot cannot be verified for an image whose USER is a name.
        runAsUser: settings.runAsUser,
        runAsGroup: settings.runAsUser,
        fsGroup: settings.runAsUser,
        seccompProfile: { type: "RuntimeDefault" },
      },
      containers: [
        {
          name: CONTAINER_NAME,
          image: settings.image,
          ports: [{ name: "http", containerPort: port, protocol: "TCP" }],
          env: [
            { name: "SIDECAR_TOKEN", valueFrom: { secretKeyRef: { name, key: SECRET_TOKEN_KEY } } },
            { name: "SIDECAR_WORKSPACE", value: WORKSPACE_PATH },
            { name: "SIDECAR_HOST", value: "0.0.0.0" },
            { name: "SIDECAR_PORT", value: String(port) },
            { name: "SIDECAR_AGENT_HOME", value: AGENT_HOME_PATH },
            ...proxyEnv(settings.egressProxyUrl),
          ],
          resources: settings.resources,
          // /health needs the bearer token, and a token in probe headers would be readable in the
          // pod spec; a TCP probe says "listening", and WAIT_VM_READY does the authenticated check.
          readinessProbe: { tcpSocket: { port }, periodSeconds: 2, failureThreshold: 3 },
          securityContext: {
            allowPrivilegeEscalation: false,
            capabilities: { drop: ["ALL"] },
            runAsNonRoot: true,
          },
          volumeMounts: [
            { name: "workspace", mountPath: WORKSPACE_PATH },
            { name: "agent-state", mountPath: AGENT_HOME_PATH },
          ],
        },
      ],
      volumes: [
        { name: "workspace", emptyDir: {} },
        { name: "agent-state", emptyDir: {} },
      ],
    },
  };
}
