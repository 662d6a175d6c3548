import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  type FakeKubernetes,
  healthOnlyContainer,
  type RunContainer,
  startFakeKubernetes,
} from "../../../test/support/fake-kubernetes";
import { loadConfig } from "../src/config";
import { WorkspaceError } from "../src/errors";
import { createVmProvider } from "../src/execution/remote";
import type { WorkspaceManagerDeps } from "../src/execution/types";
import type { EgressDenial } from "../src/execution/vm/egress/egress-proxy";
import {
  KubernetesApiError,
  KubernetesVmProvider,
  type KubernetesVmProviderOptions,
} from "../src/execution/vm/kubernetes/kubernetes-provider";
import { NETWORK_POLICY_ANNOTATION, podNetworkPolicy } from "../src/execution/vm/kubernetes/manifests";
import { UMBRA_LABELS, type VmSpec } from "../src/execution/vm/types";

const NAMESPACES = ["umbra", "default"];

let fake: FakeKubernetes;
const providers: KubernetesVmProvider[] = [];

function provider(fakeServer: FakeKubernetes, options: KubernetesVmProviderOptions = {}): KubernetesVmProvider {
  const created = new KubernetesVmProvider({ kubeConfig: fakeServer.kubeConfig(), pollIntervalMs: 20, ...options });
  providers.push(created);
  return created;
}

function vmSpec(labels: Record<string, string> = {}): VmSpec {
  const taskId = randomUUID();
  return { taskId, token: randomBytes(24).toString("hex"), labels: { "umbra.task-id": taskId, ...labels } };
}

function capturedLogs(): { logger: ReturnType<typeof pino>; text: () => string } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: pino({ level: "info" }, sink), text: () => lines.join("") };
}

async function health(endpoint: string, token: string): Promise<number> {
  const response = await fetch(`${endpoint}/health`, { headers: { authorization: `Bearer ${token}` } });
  await response.body?.cancel();
  return response.status;
}

beforeAll(async () => {
  fake = await startFakeKubernetes();
});

afterEach(async () => {
  await Promise.all(providers.splice(0).map((created) => created.close()));
  fake.resumeKubelet();
  // Every test removes what it created: a leftover pod, secret or container is a leak.
  const leftovers = NAMESPACES.flatMap((namespace) => [...fake.pods(namespace), ...fake.secrets(namespace)]);
  const running = fake.runningContainers();
  await fake.clear();
  expect(leftovers.map((object) => `${object.kind} ${object.metadata.name}`)).toEqual([]);
  expect(running).toBe(0);
});

afterAll(async () => {
  await fake.close();
  // The fake API server, every sidecar stand-in and every client connection used TCP: none may outlive
  // the suite. Closed handles are released on the next turn of the event loop, hence the wait.
  await vi.waitFor(() => {
    const tcp = process.getActiveResourcesInfo().filter((resource) => resource.startsWith("TCP"));
    expect(tcp).toEqual([]);
  });
});

describe("kubernetes VM provider", () => {
  it("keeps the token in a secret that the labelled, locked-down pod reads by reference", async () => {
    const logs = capturedLogs();
    const vms = provider(fake, { logger: logs.logger });
    const spec = vmSpec();
    const requestsBefore = fake.requests.length;

    const handle = await vms.create(spec);

    expect(handle.provider).toBe("kubernetes");
    expect(handle.externalId).toMatch(new RegExp(`^umbra-vm-${spec.taskId.slice(0, 8)}-[0-9a-f]{6}$`));
    const pod = fake.pod(handle.externalId)!;
    const podIP = pod.status.podIP as string;
    expect(podIP).toMatch(/^127\.\d+\.\d+\.\d+$/);
    expect(handle.endpoint).toBe(`http://${podIP}:8080`);

    expect(pod.metadata.labels).toEqual({
      "umbra.task-id": spec.taskId,
      [UMBRA_LABELS.managedBy]: "umbra",
      [UMBRA_LABELS.taskId]: spec.taskId,
    });
    expect(pod.spec).toMatchObject({
      runtimeClassName: "kata-fc",
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: "RuntimeDefault" } },
      volumes: [
        { name: "workspace", emptyDir: {} },
        { name: "agent-state", emptyDir: {} },
      ],
    });
    const container = pod.spec.containers[0]!;
    expect(container).toMatchObject({
      image: "umbra-sidecar:latest",
      resources: { requests: { cpu: "250m", memory: "512Mi" }, limits: { cpu: "2", memory: "2Gi" } },
      readinessProbe: { tcpSocket: { port: 8080 } },
      securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
      volumeMounts: [
        { name: "workspace", mountPath: "/workspace" },
        { name: "agent-state", mountPath: "/agent-state" },
      ],
    });
    expect(container.env).toEqual([
      { name: "SIDECAR_TOKEN", valueFrom: { secretKeyRef: { name: handle.externalId, key: "token" } } },
      { name: "SIDECAR_WORKSPACE", value: "/workspace" },
      { name: "SIDECAR_HOST", value: "0.0.0.0" },
      { name: "SIDECAR_PORT", value: "8080" },
      { name: "SIDECAR_AGENT_HOME", value: "/agent-state" },
    ]);
    expect(JSON.stringify(pod)).not.toContain(spec.token);

    const secret = fake.secret(handle.externalId)!;
    expect(Buffer.from((secret.data as Record<string, string>).token!, "base64").toString()).toBe(spec.token);
    expect(secret.metadata.labels).toEqual(pod.metadata.labels);
    expect(secret.metadata.ownerReferences).toEqual([
      { apiVersion: "v1", kind: "Pod", name: handle.externalId, uid: pod.metadata.uid },
    ]);

    const encoded = Buffer.from(spec.token).toString("base64");
    const carryingToken = fake.requests.slice(requestsBefore).filter((r) => {
      const text = JSON.stringify(r);
      return text.includes(spec.token) || text.includes(encoded);
    });
    expect(carryingToken.map((r) => `${r.method} ${r.path}`)).toEqual(["POST /api/v1/namespaces/umbra/secrets"]);
    expect(logs.text()).toContain("kubernetes.pod.created");
    expect(logs.text()).not.toContain(spec.token);

    await vms.destroy(handle.externalId);
  });

  it("serves /health at the returned endpoint to the task's token only", async () => {
    const vms = provider(fake);
    const spec = vmSpec();
    const handle = await vms.create(spec);

    await vi.waitFor(async () => expect(await health(handle.endpoint, spec.token)).toBe(200), { timeout: 5000 });
    expect(await health(handle.endpoint, "not-the-token")).toBe(401);

    await vms.destroy(handle.externalId);
  });

  it("turns label values the API would refuse into valid ones, and selects with the same rule", async () => {
    const vms = provider(fake);
    const repo = "https://example.com/acme/a repository whose name goes on and on and on and on.git";
    const handle = await vms.create(vmSpec({ "umbra.dev/repo": repo }));

    const value = fake.pod(handle.externalId)!.metadata.labels!["umbra.dev/repo"]!;
    expect(value.length).toBeLessThanOrEqual(63);
    expect(value).toMatch(/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/);
    expect((await vms.list({ "umbra.dev/repo": repo })).map((vm) => vm.externalId)).toEqual([handle.externalId]);

    await vms.destroy(handle.externalId);
  });

  it("reports a pod as starting while Pending, running once ready, exited when its container ends, then missing", async () => {
    let exitContainer: (exitCode: number) => void = () => {};
    const exitable: RunContainer = async (context) => {
      const container = await healthOnlyContainer(context);
      const exited = new Promise<{ exitCode: number }>((resolve) => {
        exitContainer = (exitCode) => resolve({ exitCode });
      });
      return { stop: container.stop, exited };
    };
    const ownFake = await startFakeKubernetes({ runContainer: exitable });
    try {
      const vms = provider(ownFake);
      ownFake.pauseKubelet();
      const creating = vms.create(vmSpec());
      await vi.waitFor(() => expect(ownFake.pods()).toHaveLength(1));
      const name = ownFake.pods()[0]!.metadata.name;
      expect(await vms.status(name)).toEqual({ state: "starting", detail: "Pending" });

      ownFake.resumeKubelet();
      const handle = await creating;
      await vi.waitFor(async () =>
        expect(await vms.status(name)).toEqual({ state: "running", detail: "Running, ready" }),
      );

      exitContainer(3);
      await vi.waitFor(async () => expect((await vms.status(name)).state).toBe("exited"));
      expect((await vms.status(name)).detail).toBe("Failed, exit code 3, Error");

      await vms.destroy(handle.externalId);
      expect(await vms.status(name)).toEqual({ state: "missing", detail: "pod not found" });
    } finally {
      await ownFake.close();
    }
  });

  it("destroy deletes the pod and its secret, and destroying again is not an error", async () => {
    const vms = provider(fake);
    const handle = await vms.create(vmSpec());
    const requestsBefore = fake.requests.length;

    await vms.destroy(handle.externalId);
    await vms.destroy(handle.externalId);

    const deletes = fake.requests.slice(requestsBefore).filter((r) => r.method === "DELETE");
    const podPath = `/api/v1/namespaces/umbra/pods/${handle.externalId}`;
    const secretPath = `/api/v1/namespaces/umbra/secrets/${handle.externalId}`;
    expect(deletes.map((r) => r.path).sort()).toEqual([podPath, podPath, secretPath, secretPath]);
    expect(deletes.find((r) => r.path === podPath)?.query.gracePeriodSeconds).toBe("5");
    expect(fake.pod(handle.externalId)).toBeUndefined();
    expect(fake.secret(handle.externalId)).toBeUndefined();
  });

  it("refuses to delete objects whose names it did not give", async () => {
    const vms = provider(fake);
    await expect(vms.destroy("umbra-server-7d9f")).rejects.toThrow(/not a sandbox this provider created/);
  });

  it("lets the garbage collector remove the secret when only the pod is deleted", async () => {
    const vms = provider(fake);
    const handle = await vms.create(vmSpec());

    await fake
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .deleteNamespacedPod({ name: handle.externalId, namespace: "umbra" });

    expect(fake.secret(handle.externalId)).toBeUndefined();
  });

  it("lists sandboxes left by an earlier provider instance, selected by label", async () => {
    const earlier = provider(fake);
    const first = vmSpec();
    const second = vmSpec();
    const firstHandle = await earlier.create(first);
    const secondHandle = await earlier.create(second);
    await earlier.close();
    const core = fake.kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespacedPod({
      namespace: "umbra",
      body: { metadata: { name: "not-ours" }, spec: { containers: [{ name: "app", image: "busybox" }] } },
    });

    const later = provider(fake);
    const byTask = await later.list({ [UMBRA_LABELS.taskId]: first.taskId });
    const everything = await later.list({});

    expect(byTask).toEqual([
      {
        externalId: firstHandle.externalId,
        endpoint: firstHandle.endpoint,
        labels: {
          "umbra.task-id": first.taskId,
          [UMBRA_LABELS.managedBy]: "umbra",
          [UMBRA_LABELS.taskId]: first.taskId,
        },
      },
    ]);
    expect(everything.map((vm) => vm.externalId).sort()).toEqual(
      [firstHandle.externalId, secondHandle.externalId].sort(),
    );
    expect(fake.requests.at(-1)?.query.labelSelector).toBe(`${UMBRA_LABELS.managedBy}=umbra`);

    for (const vm of everything) await later.destroy(vm.externalId);
    await core.deleteNamespacedPod({ name: "not-ours", namespace: "umbra", gracePeriodSeconds: 0 });
  });

  it("lists a token secret whose pod was never created, so orphan clean-up removes it", async () => {
    const taskId = randomUUID();
    const name = `umbra-vm-${taskId.slice(0, 8)}-0a1b2c`;
    const labels = { [UMBRA_LABELS.managedBy]: "umbra", [UMBRA_LABELS.taskId]: taskId };
    await fake
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .createNamespacedSecret({ namespace: "umbra", body: { metadata: { name, labels }, stringData: { token: "t" } } });

    const vms = provider(fake);
    const orphans = await vms.list({ [UMBRA_LABELS.taskId]: taskId });
    expect(orphans).toEqual([{ externalId: name, labels }]);

    await vms.destroy(name);
    expect(fake.secret(name)).toBeUndefined();
  });

  it("surfaces an RBAC denial as a KubernetesApiError naming the verb and resource, leaving nothing behind", async () => {
    const vms = provider(fake);
    fake.deny("create", "pods");
    try {
      const error = await vms.create(vmSpec()).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(KubernetesApiError);
      expect(error).toBeInstanceOf(WorkspaceError);
      expect(error).toMatchObject({ statusCode: 403, reason: "Forbidden", retryable: false });
      expect((error as Error).message).toMatch(/^kubernetes API: create pod umbra-vm-\S+ in namespace umbra failed/);
      expect((error as Error).message).toContain(
        'cannot create resource "pods" in API group "" in the namespace "umbra"',
      );
    } finally {
      fake.allow("create", "pods");
    }
  });

  it("reports server-side failures as retryable with the API's message", async () => {
    const vms = provider(fake);
    fake.injectError(
      { method: "GET", path: /\/pods\/umbra-vm-/ },
      { code: 503, reason: "ServiceUnavailable", message: "etcdserver: leader changed" },
    );
    const error = await vms.status("umbra-vm-abcdef12-000000").catch((caught: unknown) => caught);
    expect(error).toMatchObject({ statusCode: 503, retryable: true, apiMessage: "etcdserver: leader changed" });
  });

  it("names the missing namespace when it does not exist", async () => {
    const vms = provider(fake, { namespace: "nowhere" });
    await expect(vms.create(vmSpec())).rejects.toThrow(/\(404 NotFound\): namespaces "nowhere" not found/);
  });

  it("reports an unreachable API server without an HTTP status", async () => {
    const config = new KubeConfig();
    config.loadFromOptions({
      clusters: [{ name: "gone", server: "http://127.0.0.1:1", skipTLSVerify: true }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "gone", cluster: "gone", user: "u" }],
      currentContext: "gone",
    });
    const vms = new KubernetesVmProvider({ kubeConfig: config });
    const error = await vms.list({}).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ statusCode: null, retryable: true });
    expect((error as Error).message).toContain("could not be reached");
  });

  it("removes the pod and secret when the pod gets no IP before the deadline", async () => {
    const vms = provider(fake, { readyTimeoutMs: 200 });
    fake.pauseKubelet();
    await expect(vms.create(vmSpec())).rejects.toThrow(/got no IP address within 200 ms \(Pending\)/);
  });

  it("abandons a create still waiting for its pod when the provider closes, removing what it made", async () => {
    const vms = provider(fake);
    fake.pauseKubelet();
    const creating = vms.create(vmSpec());
    await vi.waitFor(() => expect(fake.pods()).toHaveLength(1));

    await vms.close();

    await expect(creating).rejects.toThrow(/closed while pod umbra-vm-\S+ was starting/);
    await expect(vms.create(vmSpec())).rejects.toThrow(/provider is closed/);
  });

  it("uses the configured runtime class, image, namespace and resources, or no runtime class at all", async () => {
    const gvisor = provider(fake, {
      runtimeClassName: "gvisor",
      image: "registry.example/umbra-sidecar:1.2.3",
      namespace: "default",
      sidecarPort: 9000,
      resources: { limits: { memory: "4Gi" } },
    });
    const plain = provider(fake, { runtimeClassName: null });

    const custom = await gvisor.create(vmSpec());
    const defaults = await plain.create(vmSpec());

    const customPod = fake.pod(custom.externalId, "default")!;
    expect(customPod.spec.runtimeClassName).toBe("gvisor");
    expect(customPod.spec.containers[0]).toMatchObject({
      image: "registry.example/umbra-sidecar:1.2.3",
      resources: { requests: { cpu: "250m", memory: "512Mi" }, limits: { cpu: "2", memory: "4Gi" } },
    });
    expect(custom.endpoint).toMatch(/:9000$/);
    expect(fake.pod(defaults.externalId)!.spec).not.toHaveProperty("runtimeClassName");

    await gvisor.destroy(custom.externalId);
    await plain.destroy(defaults.externalId);
  });

  it("points the pod's programs at the egress proxy when one is configured, and sets nothing otherwise", async () => {
    const proxied = provider(fake, { egressProxyUrl: "http://10.96.0.40:3128" });
    const direct = provider(fake, {});
    const withProxy = await proxied.create(vmSpec());
    const without = await direct.create(vmSpec());
    const env = (externalId: string) =>
      Object.fromEntries(
        (fake.pod(externalId)!.spec.containers[0]!.env ?? []).map((e: { name: string; value?: string }) => [
          e.name,
          e.value,
        ]),
      );
    expect(env(withProxy.externalId)).toMatchObject({
      HTTP_PROXY: "http://10.96.0.40:3128",
      HTTPS_PROXY: "http://10.96.0.40:3128",
      http_proxy: "http://10.96.0.40:3128",
      https_proxy: "http://10.96.0.40:3128",
      NO_PROXY: "localhost,127.0.0.1,::1",
    });
    expect(Object.keys(env(without.externalId)).filter((name) => /proxy/i.test(name))).toEqual([]);
    await proxied.destroy(withProxy.externalId);
    await direct.destroy(without.externalId);
  });
});

/**
 * Sends a CONNECT for `target` to the proxy at 127.0.0.1:`port` from the
 * local address `from` (a pod's loopback podIP, so the proxy sees the pod's
 * address as the source); resolves with the status line, and on success with
 * what the upstream echoed back of `probe`.
 */
function connectFrom(
  from: string,
  port: number,
  target: string,
  probe = "ping",
): Promise<{ status: string; echo: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, localAddress: from });
    let buffer = "";
    let status: string | null = null;
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`));
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      if (status === null) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end === -1) return;
        status = buffer.slice(0, buffer.indexOf("\r\n"));
        buffer = buffer.slice(end + 4);
        if (!status.includes(" 200 ")) {
          socket.destroy();
          resolve({ status, echo: "" });
          return;
        }
        socket.write(probe);
      }
      if (buffer.length >= probe.length) {
        socket.destroy();
        resolve({ status, echo: buffer });
      }
    });
    socket.on("error", reject);
  });
}

describe("the pods' egress proxy", () => {
  let upstream: Server;
  let upstreamPort: number;

  beforeAll(async () => {
    // An echo server on host loopback: what a pod reaches only if its policy names exactly this port.
    upstream = createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    upstreamPort = (upstream.address() as { port: number }).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
  });

  it("attributes a connection to the pod at its source address and applies the policy that pod was created with", async () => {
    const denials: EgressDenial[] = [];
    const vms = provider(fake, {
      network: { mode: "allowlist", allowedDomains: ["registry.npmjs.org"] },
      onEgressDenied: (denial) => denials.push(denial),
      egressClientCacheMs: 0,
    });
    const { port } = await vms.serveEgress(0, "127.0.0.1");
    const allowedSpec = {
      ...vmSpec(),
      network: { mode: "allowlist" as const, allowedDomains: [`127.0.0.1:${upstreamPort}`] },
    };
    const defaultSpec = vmSpec();
    const allowed = await vms.create(allowedSpec);
    const byDefault = await vms.create(defaultSpec);
    const ip = (externalId: string) => fake.pod(externalId)!.status.podIP as string;
    const annotations = fake.pod(allowed.externalId)!.metadata.annotations as Record<string, string>;
    expect(JSON.parse(annotations[NETWORK_POLICY_ANNOTATION]!)).toEqual(allowedSpec.network);

    const through = await connectFrom(ip(allowed.externalId), port, `127.0.0.1:${upstreamPort}`);
    expect(through).toEqual({ status: "HTTP/1.1 200 Connection Established", echo: "ping" });

    // The same destination from the other pod: its policy (the provider's default) does not name it.
    const refused = await connectFrom(ip(byDefault.externalId), port, `127.0.0.1:${upstreamPort}`);
    expect(refused.status).toBe("HTTP/1.1 403 Forbidden");
    expect(denials).toEqual([
      { taskId: defaultSpec.taskId, host: "127.0.0.1", port: upstreamPort, reason: "not in the allowlist" },
    ]);

    // An address no pod has, and a pod that is gone: refused, and reported for no task.
    const stranger = await connectFrom("127.0.0.1", port, `127.0.0.1:${upstreamPort}`);
    expect(stranger.status).toBe("HTTP/1.1 403 Forbidden");
    const goneIP = ip(allowed.externalId);
    await vms.destroy(allowed.externalId);
    const afterDelete = await connectFrom(goneIP, port, `127.0.0.1:${upstreamPort}`);
    expect(afterDelete.status).toBe("HTTP/1.1 403 Forbidden");
    expect(denials).toHaveLength(1);
    await vms.destroy(byDefault.externalId);
  });

  it("serves pods another replica created, looking each address up once per burst of connections", async () => {
    const creator = provider(fake, {});
    const server = provider(fake, {});
    const { port } = await server.serveEgress(0, "127.0.0.1");
    const spec = {
      ...vmSpec(),
      network: { mode: "allowlist" as const, allowedDomains: [`127.0.0.1:${upstreamPort}`] },
    };
    const handle = await creator.create(spec);
    const podIP = fake.pod(handle.externalId)!.status.podIP as string;
    const lookups = () =>
      fake.requests.filter(
        (request) => request.method === "GET" && request.query.fieldSelector === `status.podIP=${podIP}`,
      ).length;

    const results = await Promise.all([1, 2, 3].map(() => connectFrom(podIP, port, `127.0.0.1:${upstreamPort}`)));
    expect(results.map((result) => result.status)).toEqual(Array(3).fill("HTTP/1.1 200 Connection Established"));
    expect(lookups()).toBe(1);
    await creator.destroy(handle.externalId);
  });

  it("is served by the server configured with K8S_EGRESS_PROXY, on K8S_EGRESS_LISTEN, under SANDBOX_NETWORK", async () => {
    const dir = mkdtempSync(join(tmpdir(), "umbra-kubeconfig-"));
    const kubeconfig = join(dir, "config");
    writeFileSync(kubeconfig, fake.kubeConfig().exportConfig(), { mode: 0o600 });
    const savedKubeconfig = process.env.KUBECONFIG;
    process.env.KUBECONFIG = kubeconfig;
    const logs = capturedLogs();
    const denials: EgressDenial[] = [];
    try {
      const config = loadConfig({
        AGENT_MODE: "remote",
        VM_PROVIDER: "kubernetes",
        K8S_EGRESS_PROXY: "http://10.96.0.40:3128",
        K8S_EGRESS_LISTEN: "127.0.0.1:0",
        SANDBOX_ALLOWED_DOMAINS: `127.0.0.1:${upstreamPort}`,
      });
      const deps = { log: logs.logger, onEgressDenied: (denial: EgressDenial) => denials.push(denial) };
      const vms = await createVmProvider(config, deps as unknown as WorkspaceManagerDeps);
      providers.push(vms as KubernetesVmProvider);
      const listening = logs
        .text()
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line))
        .find((line) => line.msg === "kubernetes.egress.listening");
      expect(listening).toMatchObject({ host: "127.0.0.1" });
      const handle = await vms.create(vmSpec());
      const podIP = fake.pod(handle.externalId)!.status.podIP as string;
      expect(await connectFrom(podIP, listening.port, `127.0.0.1:${upstreamPort}`)).toEqual({
        status: "HTTP/1.1 200 Connection Established",
        echo: "ping",
      });
      expect((await connectFrom(podIP, listening.port, `127.0.0.1:${upstreamPort + 1}`)).status).toBe(
        "HTTP/1.1 403 Forbidden",
      );
      expect(denials.map((denial) => denial.reason)).toEqual(["not in the allowlist"]);
      await vms.destroy(handle.externalId);
    } finally {
      if (savedKubeconfig === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = savedKubeconfig;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a pod whose policy annotation cannot be read, and reads none as the provider's default", () => {
    const fallback = { mode: "off" as const, allowedDomains: [] };
    const annotated = (value: string) => ({ metadata: { annotations: { [NETWORK_POLICY_ANNOTATION]: value } } });
    expect(podNetworkPolicy({ metadata: {} }, fallback)).toBe(fallback);
    expect(podNetworkPolicy(annotated('{"mode":"on","allowedDomains":["a.example"]}'), fallback)).toEqual({
      mode: "on",
      allowedDomains: ["a.example"],
    });
    expect(podNetworkPolicy(annotated("{not json"), fallback)).toBeNull();
    expect(podNetworkPolicy(annotated('{"mode":"wide open","allowedDomains":[]}'), fallback)).toBeNull();
  });
});
