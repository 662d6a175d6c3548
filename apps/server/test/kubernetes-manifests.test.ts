/**
 * The Kubernetes deployment in deploy/kubernetes, as kubectl would read it:
 * every document parsed (kustomization resources first), then checked at the
 * schema level — kinds and required fields, labels and selectors that match,
 * probes on /api/health, the database and the secrets key from the Secret,
 * permissions to create sandbox pods, and one shared store volume.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";

const DIR = fileURLToPath(new URL("../../../deploy/kubernetes", import.meta.url));

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field below
  spec?: any;
  // biome-ignore lint/suspicious/noExplicitAny: as above
  [key: string]: any;
}

function load(file: string): Manifest[] {
  const docs = parseAllDocuments(readFileSync(join(DIR, file), "utf8"));
  return docs.map((doc) => {
    expect(doc.errors, file).toEqual([]);
    return doc.toJS() as Manifest;
  });
}

const kustomization = load("kustomization.yaml")[0]!;
const resources: string[] = kustomization.resources;
const manifests = [...resources.flatMap(load), ...load("secret.example.yaml")];
const byKind = (kind: string) => manifests.filter((m) => m.kind === kind);
const one = (kind: string, name: string) => {
  const found = manifests.find((m) => m.kind === kind && m.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found;
};
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

const REQUIRED_API: Record<string, string> = {
  Namespace: "v1",
  ServiceAccount: "v1",
  Role: "rbac.authorization.k8s.io/v1",
  RoleBinding: "rbac.authorization.k8s.io/v1",
  NetworkPolicy: "networking.k8s.io/v1",
  Deployment: "apps/v1",
  PersistentVolumeClaim: "v1",
  PodDisruptionBudget: "policy/v1",
  Service: "v1",
  Secret: "v1",
};

describe("deploy/kubernetes", () => {
  it("lists only files that exist, each document a known kind with apiVersion, name and the umbra namespace", () => {
    for (const file of resources) expect(existsSync(join(DIR, file)), file).toBe(true);
    for (const m of manifests) {
      expect(REQUIRED_API[m.kind], `${m.kind} ${m.metadata?.name}`).toBe(m.apiVersion);
      expect(m.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      if (m.kind !== "Namespace") expect(m.metadata.namespace, `${m.kind} ${m.metadata.name}`).toBe("umbra");
    }
    expect(byKind("Namespace").map((m) => m.metadata.name)).toEqual(["umbra"]);
  });

  it("runs the server as a Deployment of at least two replicas whose selector matches its pods", () => {
    const deployment = one("Deployment", "umbra-server");
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
    const podLabels = deployment.spec.template.metadata.labels;
    expect(matches(deployment.spec.selector.matchLabels, podLabels)).toBe(true);
    const pod = deployment.spec.template.spec;
    expect(pod.containers).toHaveLength(1);
    const [container] = pod.containers;
    expect(container.image).toBeTruthy();
    const port = container.ports.find((p: { name: string }) => p.name === "http");
    const env = Object.fromEntries(
      container.env.map((e: { name: string; value?: string; valueFrom?: unknown }) => [e.name, e.value ?? e.valueFrom]),
    );
    expect(Number(env.PORT)).toBe(port.containerPort);
    expect(env.HOST).toBe("0.0.0.0");
    expect([env.AGENT_MODE, env.VM_PROVIDER]).toEqual(["remote", "kubernetes"]);
    expect(Number(env.OWNER_LEASE_MS)).toBeGreaterThanOrEqual(2 * Number(env.OWNER_HEARTBEAT_MS));
    for (const probe of [container.readinessProbe, container.livenessProbe]) {
      const command: string[] = probe.exec.command;
      expect(command.join(" ")).toContain(`http://127.0.0.1:${port.containerPort}/api/health`);
      expect(command.join(" ")).toContain("process.env.API_TOKEN");
    }
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(30);
  });

  it("takes the Postgres connection, the secrets key and the API token from the Secret", () => {
    const [container] = one("Deployment", "umbra-server").spec.template.spec.containers;
    const secret = one("Secret", "umbra-server");
    for (const name of ["DATABASE_URL", "SECRETS_KEY", "API_TOKEN"]) {
      const entry = container.env.find((e: { name: string }) => e.name === name);
      expect(entry?.value, name).toBeUndefined();
      expect(entry?.valueFrom?.secretKeyRef, name).toEqual({ name: secret.metadata.name, key: name });
      expect(Object.keys(secret.stringData)).toContain(name);
    }
  });

  it("mounts one ReadWriteMany store volume at DATA_DIR in every replica", () => {
    const pod = one("Deployment", "umbra-server").spec.template.spec;
    const [container] = pod.containers;
    const dataDir = container.env.find((e: { name: string }) => e.name === "DATA_DIR").value;
    const mount = container.volumeMounts.find((m: { mountPath: string }) => m.mountPath === dataDir);
    const volume = pod.volumes.find((v: { name: string }) => v.name === mount.name);
    const claim = one("PersistentVolumeClaim", volume.persistentVolumeClaim.claimName);
    expect(claim.spec.accessModes).toContain("ReadWriteMany");
    expect(claim.spec.resources.requests.storage).toBeTruthy();
  });

  it("keeps replicas through disruptions and serves them behind one Service, both selecting the server's pods", () => {
    const deployment = one("Deployment", "umbra-server");
    const podLabels = deployment.spec.template.metadata.labels;
    const budget = one("PodDisruptionBudget", "umbra-server");
    expect(matches(budget.spec.selector.matchLabels, podLabels)).toBe(true);
    expect(budget.spec.minAvailable).toBeGreaterThanOrEqual(1);
    expect(budget.spec.minAvailable).toBeLessThan(deployment.spec.replicas);
    const service = one("Service", "umbra-server");
    expect(matches(service.spec.selector, podLabels)).toBe(true);
    expect(service.spec.ports.map((p: { targetPort: string }) => p.targetPort)).toContain("http");
  });

  it("lets the server's service account create, read, list and delete sandbox pods and their token secrets", () => {
    const pod = one("Deployment", "umbra-server").spec.template.spec;
    const account = one("ServiceAccount", pod.serviceAccountName);
    const binding = byKind("RoleBinding").find((b) =>
      b.subjects.some(
        (s: { kind: string; name: string }) => s.kind === "ServiceAccount" && s.name === account.metadata.name,
      ),
    );
    expect(binding).toBeDefined();
    const role = one("Role", binding!.roleRef.name);
    const verbs = (resource: string) =>
      role.rules
        .filter((r: { resources: string[] }) => r.resources.includes(resource))
        .flatMap((r: { verbs: string[] }) => r.verbs);
    expect(verbs("pods")).toEqual(expect.arrayContaining(["create", "get", "list", "delete"]));
    expect(verbs("secrets")).toEqual(expect.arrayContaining(["create", "list", "delete"]));
  });

  it("gives sandbox pods a way out only to the server's egress port, which the server listens on", () => {
    const deployment = one("Deployment", "umbra-server");
    const podLabels = deployment.spec.template.metadata.labels;
    const container = deployment.spec.template.spec.containers[0];
    const egress = one("Service", "umbra-egress");
    expect(matches(egress.spec.selector, podLabels)).toBe(true);
    const targetPort = egress.spec.ports[0].targetPort;
    expect(container.ports).toContainEqual(expect.objectContaining({ containerPort: targetPort, protocol: "TCP" }));
    const listen = container.env.find((e: { name: string }) => e.name === "K8S_EGRESS_LISTEN").value;
    expect(listen).toBe(`0.0.0.0:${targetPort}`);
    const policy = one("NetworkPolicy", "umbra-sandboxes");
    expect(policy.spec.egress).toEqual([
      {
        to: [{ podSelector: { matchLabels: { "app.kubernetes.io/name": podLabels["app.kubernetes.io/name"] } } }],
        ports: [{ protocol: "TCP", port: targetPort }],
      },
    ]);
  });
});
