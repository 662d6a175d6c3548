/**
 * A fake Kubernetes API server for tests: a real HTTP server on 127.0.0.1
 * speaking the API's JSON for the little the kubernetes VM provider uses —
 * create, get, list (equality label selectors; field selectors on the few
 * fields the API supports for every kind and for pods), patch and delete of pods and
 * secrets under /api/v1/namespaces/{ns}/ — with `Status` objects for errors,
 * bearer-token authentication, and optional RBAC denials and injected
 * failures.
 *
 * A fake kubelet gives pods a life: Pending, then a distinct loopback podIP
 * (all of 127.0.0.0/8 is loopback on Linux), then the container is started by
 * the injected `runContainer` with its environment resolved (secretKeyRef read
 * from stored secrets; a missing secret keeps the pod in
 * CreateContainerConfigError until it appears), then Running, and Ready once
 * its readiness probe passes. A container that exits ends the pod Succeeded or
 * Failed. Deleting a pod stops its container before the answer is sent, and the
 * garbage collector removes objects the pod owns.
 *
 * Invariants: every request is recorded in `requests`; close() stops every
 * container and the server, leaving no sockets or processes behind.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { KubeConfig } from "@kubernetes/client-node";

type Json = Record<string, unknown>;

interface Meta {
  name: string;
  namespace: string;
  uid: string;
  labels?: Record<string, string>;
  ownerReferences?: { uid: string }[];
  deletionTimestamp?: string;
  [key: string]: unknown;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}
interface Probe {
  tcpSocket?: { port: number };
  httpGet?: { path?: string; port: number; httpHeaders?: { name: string; value: string }[] };
}
interface Container {
  name: string;
  image: string;
  env?: EnvVar[];
  ports?: { containerPort: number }[];
  readinessProbe?: Probe;
  [key: string]: unknown;
}
/** A stored object, in the API's JSON shape. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  [key: string]: unknown;
}
export interface FakePod extends KubeObject {
  spec: { containers: Container[]; runtimeClassName?: string; [key: string]: unknown };
  status: Json;
}

/**
 * What the fake kubelet hands to `runContainer`. A runner that starts a real
 * process (e.g. the sidecar bundle) should override the host to `podIP` and map
 * the pod's volume mounts (the emptyDir at /workspace) to a temporary directory.
 */
export interface ContainerContext {
  /** A copy of the pod as stored, spec included. */
  pod: FakePod;
  /** The container's environment, `valueFrom.secretKeyRef` resolved from stored secrets. */
  env: Record<string, string>;
  /** The pod's loopback address. Bind here: the pod's SIDECAR_HOST=0.0.0.0 would clash between pods. */
  podIP: string;
  /** The container's first declared port (else SIDECAR_PORT, else 8080). */
  port: number;
}
export interface RunningContainer {
  /** Stops the container; called once, when its pod is deleted or the fake closes. */
  stop(): Promise<void>;
  /** Settles when the container exits by itself; the pod then ends Succeeded (0) or Failed. */
  exited?: Promise<{ exitCode: number; reason?: string }>;
}
export type RunContainer = (context: ContainerContext) => Promise<RunningContainer>;

export interface FakeKubernetesOptions {
  /** Starts a pod's container. Default: a tiny HTTP server answering GET /health for the SIDECAR_TOKEN bearer. */
  runContainer?: RunContainer;
  /** Namespaces that exist. Default `["default", "umbra"]`. */
  namespaces?: string[];
  /** Milliseconds a pod stays Pending before it is scheduled. Default `20`. */
  schedulingDelayMs?: number;
  /** The user named in RBAC denials. Default `system:serviceaccount:umbra:umbra-server`. */
  userName?: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType: string | undefined;
  body: unknown;
}

interface InjectedError {
  method: string | undefined;
  path: string | RegExp;
  code: number;
  reason: string;
  message: string;
  remaining: number;
}

interface PodRecord {
  pod: FakePod;
  deleted: boolean;
  lifecycle: Promise<void>;
  container?: RunningContainer;
  stopping?: Promise<void>;
}

type Resource = "pods" | "secrets";
type Handled = { code: number; body: unknown };

class ApiFailure extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Json,
  ) {
    super(message);
  }
}

const KINDS: Record<Resource, string> = { pods: "Pod", secrets: "Secret" };
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const VERBS: Record<string, string> = { POST: "create", PATCH: "patch", DELETE: "delete" };

function statusBody(code: number, reason: string, message: string, details?: Json): Json {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, details, code };
}

function notFound(resource: string, name: string): ApiFailure {
  return new ApiFailure(404, "NotFound", `${resource} "${name}" not found`, { name, kind: resource });
}

function invalid(kind: string, name: string, field: string, value: unknown, why: string): ApiFailure {
  const message = `${kind} "${name}" is invalid: ${field}: Invalid value: ${JSON.stringify(value)}: ${why}`;
  return new ApiFailure(422, "Invalid", message, { name, kind: kind.toLowerCase() });
}

/** Parses an equality-based selector (`a=b,c==d,e!=f,g,!h`); set-based syntax is refused like an old API server. */
function selectorMatcher(selector: string): (labels: Record<string, string>) => boolean {
  const tests = selector
    .split(",")
    .filter((part) => part.trim())
    .map((raw): ((labels: Record<string, string>) => boolean) => {
      const part = raw.trim();
      const match = /^(!?)([^!=\s]+)\s*(?:(!=|==|=)\s*(\S*))?$/.exec(part);
      if (!match || (match[1] && match[3]) || / (in|notin) /.test(part)) {
        throw new ApiFailure(400, "BadRequest", `unable to parse requirement: ${JSON.stringify(part)}`);
      }
      const [, not, key = "", op, value = ""] = match;
      if (!op) return (labels) => key in labels !== Boolean(not);
      return op === "!=" ? (labels) => labels[key] !== value : (labels) => labels[key] === value;
    });
  return (labels) => tests.every((test) => test(labels));
}

/** Fields the API selects on: every kind's name and namespace, and for pods the ones the provider uses. */
const FIELD_PATHS: Record<Resource, Record<string, (object: KubeObject) => unknown>> = {
  pods: {
    "metadata.name": (o) => o.metadata.name,
    "metadata.namespace": (o) => o.metadata.namespace,
    "status.podIP": (o) => (o as FakePod).status.podIP,
    "status.phase": (o) => (o as FakePod).status.phase,
  },
  secrets: {
    "metadata.name": (o) => o.metadata.name,
    "metadata.namespace": (o) => o.metadata.namespace,
  },
};

/** A field selector (`a=b,c!=d`) as the API reads it; an unsupported field is a 400, as there. */
function fieldMatcher(resource: Resource, selector: string): (object: KubeObject) => boolean {
  const tests = selector
    .split(",")
    .filter((part) => part.trim())
    .map((raw): ((object: KubeObject) => boolean) => {
      const match = /^([^!=\s]+)\s*(!=|==|=)\s*(\S*)$/.exec(raw.trim());
      if (!match) throw new ApiFailure(400, "BadRequest", `invalid field selector: ${JSON.stringify(raw)}`);
      const [, field = "", op, value = ""] = match;
      const read = FIELD_PATHS[resource][field];
      if (!read) {
        throw new ApiFailure(400, "BadRequest", `field label not supported: ${field}`);
      }
      const text = (object: KubeObject) => String(read(object) ?? "");
      return op === "!=" ? (object) => text(object) !== value : (object) => text(object) === value;
    });
  return (object) => tests.every((test) => test(object));
}

/** RFC 6902 add/replace/remove/test on plain JSON, enough for metadata edits. */
function applyJsonPatch(target: Json, operations: unknown): void {
  if (!Array.isArray(operations)) throw new ApiFailure(400, "BadRequest", "json patch must be an array");
  for (const operation of operations as { op: string; path: string; value?: unknown }[]) {
    const keys = operation.path
      .split("/")
      .slice(1)
      .map((key) => key.replace(/~1/g, "/").replace(/~0/g, "~"));
    const last = keys.pop();
    let parent: Json = target;
    for (const key of keys) {
      if (typeof parent[key] !== "object" || parent[key] === null) {
        throw new ApiFailure(422, "Invalid", `doc is missing path: "${operation.path}"`);
      }
      parent = parent[key] as Json;
    }
    if (last === undefined) throw new ApiFailure(422, "Invalid", "cannot patch the document root");
    if (operation.op === "add" || operation.op === "replace") parent[last] = structuredClone(operation.value);
    else if (operation.op === "remove") delete parent[last];
    else if (operation.op !== "test" || JSON.stringify(parent[last]) !== JSON.stringify(operation.value)) {
      throw new ApiFailure(422, "Invalid", `json patch operation ${operation.op} on ${operation.path} failed`);
    }
  }
}

function mergePatch(target: Json, patch: Json): void {
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete target[key];
    else if (typeof value === "object" && !Array.isArray(value) && typeof target[key] === "object") {
      mergePatch(target[key] as Json, value as Json);
    } else target[key] = structuredClone(value);
  }
}

async function readBody(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiFailure(400, "BadRequest", "the request body is not valid JSON");
  }
}

/** The default container: answers GET /health with 200 for `Bearer $SIDECAR_TOKEN`, 401 otherwise. */
export const healthOnlyContainer: RunContainer = async ({ env, podIP, port }) => {
  const server = createServer((request, response) => {
    if (request.url !== "/health") return void response.writeHead(404).end();
    const authorized = request.headers.authorization === `Bearer ${env.SIDECAR_TOKEN}`;
    response.writeHead(authorized ? 200 : 401, { "content-type": "application/json" });
    response.end(JSON.stringify(authorized ? { ok: true } : { error: { code: "UNAUTHORIZED" } }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, podIP, resolve);
  });
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
};

export class FakeKubernetes {
  /** Every request received, in order. */
  readonly requests: RecordedRequest[] = [];
  /** Bearer token the fake API requires; `kubeConfig()` carries it. */
  readonly token = randomBytes(16).toString("hex");
  private readonly objects = { pods: new Map<string, KubeObject>(), secrets: new Map<string, KubeObject>() };
  private readonly podRecords = new Map<string, PodRecord>();
  private readonly injected: InjectedError[] = [];
  private readonly denied = new Set<string>();
  private readonly namespaces: Set<string>;
  private readonly runContainer: RunContainer;
  private readonly schedulingDelayMs: number;
  private readonly userName: string;
  private readonly ipBase = [1 + Math.floor(Math.random() * 254), Math.floor(Math.random() * 200)];
  private nextHost = 2;
  private resourceVersion = 1000;
  private paused: { promise: Promise<void>; resume: () => void } | null = null;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    options: FakeKubernetesOptions,
  ) {
    this.namespaces = new Set(options.namespaces ?? ["default", "umbra"]);
    this.runContainer = options.runContainer ?? healthOnlyContainer;
    this.schedulingDelayMs = options.schedulingDelayMs ?? 20;
    this.userName = options.userName ?? "system:serviceaccount:umbra:umbra-server";
  }

  static async start(options: FakeKubernetesOptions = {}): Promise<FakeKubernetes> {
    let fake: FakeKubernetes | undefined;
    const server = createServer((request, response) => void fake?.handle(request, response));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    if (!address || typeof address === "string") throw new Error("fake kubernetes: no TCP address");
    fake = new FakeKubernetes(server, `http://127.0.0.1:${address.port}`, options);
    return fake;
  }

  /** A KubeConfig pointing at this server, authenticated with `token`. */
  kubeConfig(): KubeConfig {
    const config = new KubeConfig();
    config.loadFromOptions({
      clusters: [{ name: "fake", server: this.url, skipTLSVerify: true }],
      users: [{ name: "fake-user", token: this.token }],
      contexts: [{ name: "fake", cluster: "fake", user: "fake-user", namespace: "umbra" }],
      currentContext: "fake",
    });
    return config;
  }

  pods(namespace = "umbra"): FakePod[] {
    return this.list("pods", namespace) as FakePod[];
  }

  secrets(namespace = "umbra"): KubeObject[] {
    return this.list("secrets", namespace);
  }

  /** A copy of the stored pod, or undefined. */
  pod(name: string, namespace = "umbra"): FakePod | undefined {
    const pod = this.objects.pods.get(`${namespace}/${name}`);
    return pod && (structuredClone(pod) as FakePod);
  }

  /** A copy of the stored secret, or undefined. */
  secret(name: string, namespace = "umbra"): KubeObject | undefined {
    const secret = this.objects.secrets.get(`${namespace}/${name}`);
    return secret && structuredClone(secret);
  }

  /** Answers matching requests with an error Status, `times` times (default once). */
  injectError(
    match: { method?: string; path: string | RegExp },
    error: { code: number; reason: string; message: string },
    times = 1,
  ): void {
    this.injected.push({ method: match.method, path: match.path, ...error, remaining: times });
  }

  /** Refuses `verb` (create, get, list, patch, delete) on `resource` like RBAC does, until `allow`. */
  deny(verb: string, resource: Resource): void {
    this.denied.add(`${verb} ${resource}`);
  }

  allow(verb: string, resource: Resource): void {
    this.denied.delete(`${verb} ${resource}`);
  }

  /** New pods stay Pending without an IP until resumeKubelet(). */
  pauseKubelet(): void {
    if (this.paused) return;
    let resume = () => {};
    const promise = new Promise<void>((resolve) => {
      resume = resolve;
    });
    this.paused = { promise, resume };
  }

  resumeKubelet(): void {
    this.paused?.resume();
    this.paused = null;
  }

  /** Containers started and not yet stopped. */
  runningContainers(): number {
    return [...this.podRecords.values()].filter((record) => record.container && !record.stopping).length;
  }

  /** Stops every container and forgets every object, requests and injected failures included. */
  async clear(): Promise<void> {
    this.resumeKubelet();
    await Promise.all([...this.objects.pods.keys()].map((key) => this.stopPod(key)));
    this.objects.secrets.clear();
    this.requests.length = 0;
    this.injected.length = 0;
    this.denied.clear();
  }

  async close(): Promise<void> {
    await this.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private list(resource: Resource, namespace: string): KubeObject[] {
    return [...this.objects[resource].values()]
      .filter((object) => object.metadata.namespace === namespace)
      .map((object) => structuredClone(object));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", this.url);
    const method = request.method ?? "GET";
    let result: Handled;
    try {
      const body = await readBody(request);
      this.requests.push({
        method,
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        contentType: request.headers["content-type"],
        body,
      });
      if (request.headers.authorization !== `Bearer ${this.token}`)
        throw new ApiFailure(401, "Unauthorized", "Unauthorized");
      result = await this.route(method, url, request.headers["content-type"], body);
    } catch (error) {
      const failure =
        error instanceof ApiFailure ? error : new ApiFailure(500, "InternalError", `fake: ${String(error)}`);
      result = { code: failure.code, body: statusBody(failure.code, failure.reason, failure.message, failure.details) };
    }
    response.writeHead(result.code, { "content-type": "application/json" });
    response.end(JSON.stringify(result.body));
  }

  private async route(method: string, url: URL, contentType: string | undefined, body: unknown): Promise<Handled> {
    const injected = this.injected.find(
      (rule) =>
        rule.remaining > 0 &&
        (!rule.method || rule.method === method) &&
        (typeof rule.path === "string" ? rule.path === url.pathname : rule.path.test(url.pathname)),
    );
    if (injected) {
      injected.remaining -= 1;
      throw new ApiFailure(injected.code, injected.reason, injected.message);
    }
    const match = /^\/api\/v1\/namespaces\/([^/]+)\/(pods|secrets)(?:\/([^/]+))?$/.exec(url.pathname);
    if (!match) throw new ApiFailure(404, "NotFound", "the server could not find the requested resource");
    const [, namespace = "", resource, rawName] = match as unknown as [string, string, Resource, string?];
    const name = rawName === undefined ? undefined : decodeURIComponent(rawName);
    const verb = VERBS[method] ?? (method === "GET" ? (name ? "get" : "list") : method.toLowerCase());
    if (this.denied.has(`${verb} ${resource}`)) {
      const subject = name ? `${resource} "${name}"` : resource;
      const message = `${subject} is forbidden: User "${this.userName}" cannot ${verb} resource "${resource}" in API group "" in the namespace "${namespace}"`;
      throw new ApiFailure(403, "Forbidden", message, { name, kind: resource });
    }
    if (!this.namespaces.has(namespace)) throw notFound("namespaces", namespace);
    const key = `${namespace}/${name}`;
    if (method === "POST" && !name) return { code: 201, body: this.create(resource, namespace, body) };
    if (method === "GET" && !name) return { code: 200, body: this.listResponse(resource, namespace, url) };
    if (!name) throw new ApiFailure(405, "MethodNotAllowed", `${method} is not supported on ${resource}`);
    const stored = this.objects[resource].get(key);
    if (!stored) throw notFound(resource, name);
    if (method === "GET") return { code: 200, body: stored };
    if (method === "PATCH") return { code: 200, body: this.patch(resource, stored, contentType, body) };
    if (method === "DELETE") return { code: 200, body: await this.remove(resource, key) };
    throw new ApiFailure(405, "MethodNotAllowed", `${method} is not supported on ${resource}/${name}`);
  }

  private create(resource: Resource, namespace: string, body: unknown): KubeObject {
    const kind = KINDS[resource];
    const object = structuredClone((body ?? {}) as KubeObject);
    const meta = (object.metadata ?? {}) as Meta;
    const name = meta.name ?? "";
    if (!DNS_SUBDOMAIN.test(name) || name.length > 253) {
      throw invalid(
        kind,
        name,
        "metadata.name",
        name,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
      );
    }
    for (const [labelKey, value] of Object.entries(meta.labels ?? {})) {
      if (value.length > 63) throw invalid(kind, name, "metadata.labels", value, "must be no more than 63 characters");
      if (!LABEL_VALUE.test(value))
        throw invalid(
          kind,
          name,
          "metadata.labels",
          value,
          `a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.' (key ${labelKey})`,
        );
    }
    if (this.objects[resource].has(`${namespace}/${name}`)) {
      throw new ApiFailure(409, "AlreadyExists", `${resource} "${name}" already exists`, { name, kind: resource });
    }
    object.apiVersion = "v1";
    object.kind = kind;
    object.metadata = {
      ...meta,
      name,
      namespace,
      uid: randomUUID(),
      resourceVersion: String(++this.resourceVersion),
      creationTimestamp: new Date().toISOString(),
    };
    if (resource === "secrets") this.prepareSecret(object);
    else this.preparePod(object as FakePod);
    this.objects[resource].set(`${namespace}/${name}`, object);
    if (resource === "pods") this.admitPod(object as FakePod);
    return object;
  }

  private prepareSecret(secret: KubeObject): void {
    const data = { ...((secret.data as Record<string, string> | undefined) ?? {}) };
    for (const [key, value] of Object.entries(data)) {
      if (Buffer.from(value, "base64").toString("base64") !== value) {
        throw invalid("Secret", secret.metadata.name, `data[${key}]`, "<value>", "illegal base64 data");
      }
    }
    for (const [key, value] of Object.entries((secret.stringData as Record<string, string> | undefined) ?? {})) {
      data[key] = Buffer.from(value, "utf8").toString("base64");
    }
    delete secret.stringData;
    secret.data = data;
    secret.type ??= "Opaque";
  }

  private preparePod(pod: FakePod): void {
    const containers = pod.spec?.containers ?? [];
    if (containers.length === 0 || containers.some((container) => !container.name || !container.image)) {
      throw invalid(
        "Pod",
        pod.metadata.name,
        "spec.containers",
        containers.length,
        "every container needs a name and an image",
      );
    }
    pod.status = {
      phase: "Pending",
      conditions: [{ type: "PodScheduled", status: "True", lastTransitionTime: new Date().toISOString() }],
      qosClass: "Burstable",
    };
  }

  private listResponse(resource: Resource, namespace: string, url: URL): Json {
    const matches = selectorMatcher(url.searchParams.get("labelSelector") ?? "");
    const fields = fieldMatcher(resource, url.searchParams.get("fieldSelector") ?? "");
    const items = this.list(resource, namespace).filter(
      (object) => matches(object.metadata.labels ?? {}) && fields(object),
    );
    return {
      kind: `${KINDS[resource]}List`,
      apiVersion: "v1",
      metadata: { resourceVersion: String(this.resourceVersion) },
      items,
    };
  }

  private patch(resource: Resource, stored: KubeObject, contentType: string | undefined, body: unknown): KubeObject {
    const next = structuredClone(stored);
    const type = contentType?.split(";")[0]?.trim();
    if (type === "application/json-patch+json") applyJsonPatch(next, body);
    else if (type === "application/merge-patch+json") mergePatch(next, (body ?? {}) as Json);
    else {
      throw new ApiFailure(
        415,
        "UnsupportedMediaType",
        `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json`,
      );
    }
    if (
      resource === "secrets" &&
      stored.immutable === true &&
      JSON.stringify(next.data) !== JSON.stringify(stored.data)
    ) {
      throw invalid("Secret", stored.metadata.name, "data", "<data>", "field is immutable when `immutable` is set");
    }
    next.metadata = { ...next.metadata, uid: stored.metadata.uid, resourceVersion: String(++this.resourceVersion) };
    this.objects[resource].set(`${stored.metadata.namespace}/${stored.metadata.name}`, next);
    if (resource === "pods") {
      const record = this.podRecords.get(`${stored.metadata.namespace}/${stored.metadata.name}`);
      if (record) record.pod = next as FakePod;
    }
    return next;
  }

  private async remove(resource: Resource, key: string): Promise<unknown> {
    const stored = this.objects[resource].get(key);
    if (!stored) throw notFound(resource, key.split("/")[1] ?? key);
    if (resource === "secrets") {
      this.objects.secrets.delete(key);
      const { name, uid } = stored.metadata;
      return {
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Success",
        details: { name, kind: resource, uid },
      };
    }
    stored.metadata.deletionTimestamp = new Date().toISOString();
    await this.stopPod(key);
    return stored;
  }

  /** Stops the pod's container, forgets the pod and collects what it owned. */
  private async stopPod(key: string): Promise<void> {
    const record = this.podRecords.get(key);
    if (record) {
      record.deleted = true;
      await record.lifecycle;
      if (record.container) {
        record.stopping ??= record.container.stop();
        await record.stopping;
      }
      this.podRecords.delete(key);
    }
    const pod = this.objects.pods.get(key);
    this.objects.pods.delete(key);
    if (!pod) return;
    for (const [secretKey, secret] of this.objects.secrets) {
      if (secret.metadata.ownerReferences?.some((owner) => owner.uid === pod.metadata.uid)) {
        this.objects.secrets.delete(secretKey);
      }
    }
  }

  private admitPod(pod: FakePod): void {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    const record: PodRecord = { pod, deleted: false, lifecycle: Promise.resolve() };
    this.podRecords.set(key, record);
    record.lifecycle = this.runKubelet(record).catch((error: unknown) => {
      this.setStatus(record, { phase: "Failed", reason: "FakeKubeletError", message: String(error) });
    });
  }

  private setStatus(record: PodRecord, status: Json): void {
    const key = `${record.pod.metadata.namespace}/${record.pod.metadata.name}`;
    const current = (this.objects.pods.get(key) as FakePod | undefined) ?? record.pod;
    current.status = { ...current.status, ...status };
    current.metadata.resourceVersion = String(++this.resourceVersion);
    record.pod = current;
  }

  private allocateIP(): string {
    const host = this.nextHost++;
    const third = (this.ipBase[1] ?? 0) + Math.floor(host / 250);
    return `127.${this.ipBase[0]}.${third}.${2 + (host % 250)}`;
  }

  private resolveEnv(container: Container, namespace: string): Record<string, string> | string {
    const env: Record<string, string> = {};
    for (const variable of container.env ?? []) {
      const ref = variable.valueFrom?.secretKeyRef;
      if (!ref) {
        env[variable.name] = variable.value ?? "";
        continue;
      }
      const secret = this.objects.secrets.get(`${namespace}/${ref.name}`);
      const encoded = (secret?.data as Record<string, string> | undefined)?.[ref.key];
      if (encoded === undefined)
        return secret
          ? `couldn't find key ${ref.key} in Secret ${namespace}/${ref.name}`
          : `secret "${ref.name}" not found`;
      env[variable.name] = Buffer.from(encoded, "base64").toString("utf8");
    }
    return env;
  }

  private async runKubelet(record: PodRecord): Promise<void> {
    await sleep(this.schedulingDelayMs);
    while (this.paused && !record.deleted) await Promise.race([this.paused.promise, sleep(50)]);
    if (record.deleted) return;
    const podIP = this.allocateIP();
    const container = record.pod.spec.containers[0] as Container;
    const containerStatus = (state: Json, ready = false) => [
      { name: container.name, image: container.image, ready, started: "running" in state, restartCount: 0, state },
    ];
    const conditions = (ready: boolean) => [
      { type: "PodScheduled", status: "True" },
      { type: "Ready", status: ready ? "True" : "False" },
    ];
    this.setStatus(record, {
      ...{ podIP, podIPs: [{ ip: podIP }], hostIP: "127.0.0.1", startTime: new Date().toISOString() },
      containerStatuses: containerStatus({ waiting: { reason: "ContainerCreating" } }),
    });
    let env = this.resolveEnv(container, record.pod.metadata.namespace);
    while (typeof env === "string") {
      const waiting = { reason: "CreateContainerConfigError", message: env };
      this.setStatus(record, { containerStatuses: containerStatus({ waiting }) });
      await sleep(50);
      if (record.deleted) return;
      env = this.resolveEnv(container, record.pod.metadata.namespace);
    }
    const port = container.ports?.[0]?.containerPort ?? Number(env.SIDECAR_PORT ?? 8080);
    try {
      record.container = await this.runContainer({ pod: structuredClone(record.pod), env, podIP, port });
    } catch (error) {
      const terminated = { exitCode: 128, reason: "StartError", message: String(error) };
      this.setStatus(record, { phase: "Failed", containerStatuses: containerStatus({ terminated }) });
      return;
    }
    if (record.deleted) return;
    const running = { running: { startedAt: new Date().toISOString() } };
    this.setStatus(record, {
      phase: "Running",
      containerStatuses: containerStatus(running),
      conditions: conditions(false),
    });
    void record.container.exited?.then(({ exitCode, reason }) => {
      if (record.deleted) return;
      const terminated = { exitCode, reason: reason ?? (exitCode === 0 ? "Completed" : "Error") };
      const phase = exitCode === 0 ? "Succeeded" : "Failed";
      this.setStatus(record, {
        phase,
        conditions: conditions(false),
        containerStatuses: containerStatus({ terminated }),
      });
    });
    while (!record.deleted && record.pod.status.phase === "Running") {
      if (await this.probe(container.readinessProbe, podIP)) {
        this.setStatus(record, { containerStatuses: containerStatus(running, true), conditions: conditions(true) });
        return;
      }
      await sleep(50);
    }
  }

  private async probe(probe: Probe | undefined, podIP: string): Promise<boolean> {
    if (probe?.tcpSocket) {
      const port = probe.tcpSocket.port;
      return new Promise((resolve) => {
        const socket = connect({ host: podIP, port }, () => {
          socket.destroy();
          resolve(true);
        });
        socket.once("error", () => resolve(false));
      });
    }
    if (probe?.httpGet) {
      const headers = Object.fromEntries(
        (probe.httpGet.httpHeaders ?? []).map((header) => [header.name, header.value]),
      );
      const answer = await fetch(`http://${podIP}:${probe.httpGet.port}${probe.httpGet.path ?? "/"}`, {
        headers,
      }).catch(() => null);
      await answer?.body?.cancel();
      return answer !== null && answer.status >= 200 && answer.status < 400;
    }
    return true;
  }
}

/** Starts a fake API server on 127.0.0.1 and a free port. */
export function startFakeKubernetes(options: FakeKubernetesOptions = {}): Promise<FakeKubernetes> {
  return FakeKubernetes.start(options);
}
