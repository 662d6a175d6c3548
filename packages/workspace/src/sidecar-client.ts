/**
 * The ToolExecutor over HTTP: what the server uses to act on a remote task's
 * workspace through the sidecar running in its sandbox.
 *
 * Invariants:
 * - Every reply is parsed with the shared protocol schemas before use.
 * - The sidecar's error codes come back as the same typed errors the local
 *   executor throws (WorkspacePathError, WorkspaceOperationError), so callers
 *   cannot tell the two executors apart; anything else is a SidecarError.
 * - Aborting a command's AbortSignal aborts its HTTP request; the sidecar
 *   treats the dropped connection as cancellation and kills the command.
 * - The token is only ever sent in the Authorization header, never logged or
 *   put into error messages.
 * - Two transports: `http://host:port` (a pod) and `unix:/absolute/path` (a
 *   sandbox on this host, whose sidecar listens on a socket in the sandbox's
 *   directory: nothing on the host's network can reach it, or sniff it).
 */
import { Agent, fetch as undiciFetch } from "undici";
import type { z } from "zod";
import {
  CommitReply,
  EditFileReply,
  ErrorReply,
  ExecEvent,
  GrepReply,
  HEAD_HEADER,
  HealthReply,
  ListDirReply,
  OkReply,
  ReadFileReply,
  ReceiveReply,
  type SidecarHealth,
} from "./sidecar-protocol";
import type { CommandResult, CommitResult, DirEntry, GrepMatch, RunCommandOptions, ToolExecutor } from "./types";
import { WORKSPACE_OPERATION_ERROR_CODES, WorkspaceOperationError, WorkspacePathError } from "./types";

export interface SidecarClientOptions {
  /** Where the sidecar listens: a base URL (`http://10.0.0.7:8080`) or a unix socket (`unix:/path/sidecar.sock`). */
  endpoint: string;
  /** The sandbox's bearer token. */
  token: string;
  /** Limit for each request except /exec (which runs until the command ends), in milliseconds. Default 120000. */
  timeoutMs?: number;
}

/** The sidecar could not be reached, answered with an error that is not a workspace error, or broke the protocol. */
export class SidecarError extends Error {
  constructor(
    /** HTTP status, or 0 when no answer arrived. */
    readonly status: number,
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "SidecarError";
  }
}

const ABORTED: CommandResult = { exitCode: null, signal: null, timedOut: false, aborted: true };
const OPERATION_CODES: ReadonlySet<string> = new Set(WORKSPACE_OPERATION_ERROR_CODES);

async function errorFromResponse(response: Response, path?: string): Promise<Error> {
  const text = await response.text().catch(() => "");
  let body: ErrorReply | undefined;
  try {
    body = ErrorReply.parse(JSON.parse(text));
  } catch {
    return new SidecarError(response.status, "BAD_REPLY", `sidecar answered ${response.status}: ${text.slice(0, 200)}`);
  }
  const { code, message, reason } = body.error;
  if (code === "PATH_REFUSED") return new WorkspacePathError(path ?? "", reason ?? message);
  if (OPERATION_CODES.has(code)) {
    return new WorkspaceOperationError(code as WorkspaceOperationError["code"], message);
  }
  return new SidecarError(response.status, code, message);
}

async function* ndjsonLines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffered += done ? decoder.decode() : decoder.decode(value, { stream: true });
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) if (line.trim()) yield line;
      if (done) break;
    }
    if (buffered.trim()) yield buffered;
  } finally {
    reader.releaseLock();
  }
}

const UNIX_PREFIX = "unix:";

type Fetch = (url: string, init: RequestInit) => Promise<Response>;

/** The fetch and base URL for an endpoint; a unix socket gets a connection pool of its own. */
function transportFor(endpoint: string): { baseUrl: string; fetch: Fetch } {
  if (!endpoint.startsWith(UNIX_PREFIX)) return { baseUrl: endpoint.replace(/\/+$/, ""), fetch: globalThis.fetch };
  const socketPath = endpoint.slice(UNIX_PREFIX.length);
  if (!socketPath.startsWith("/")) throw new Error(`a unix endpoint needs an absolute path, got ${endpoint}`);
  const dispatcher = new Agent({ connect: { socketPath } });
  return {
    // The host part is never resolved: every connection goes to the socket.
    baseUrl: "http://sidecar.invalid",
    fetch: (url, init) =>
      undiciFetch(url, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher }) as unknown as Promise<Response>,
  };
}

export class SidecarClient implements ToolExecutor {
  private readonly endpoint: string;
  private readonly token: string;
  private readonly timeoutMs: number;
  private readonly transport: { baseUrl: string; fetch: Fetch };

  constructor(options: SidecarClientOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, "");
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.transport = transportFor(this.endpoint);
  }

  health(): Promise<SidecarHealth> {
    return this.call("GET", "/health", undefined, HealthReply);
  }

  async readFile(path: string): Promise<string> {
    return (await this.call("POST", "/files/read", { path }, ReadFileReply, path)).content;
  }

  async writeFile(path: string, content: string): Promise<void> {
    await this.call("POST", "/files/write", { path, content }, OkReply, path);
  }

  editFile(path: string, search: string, replace: string, options: { all?: boolean } = {}) {
    return this.call("POST", "/files/edit", { path, search, replace, all: options.all }, EditFileReply, path);
  }

  async listDir(path: string): Promise<DirEntry[]> {
    return (await this.call("POST", "/files/list", { path }, ListDirReply, path)).entries;
  }

  async grep(
    pattern: string,
    options: { path?: string; maxResults?: number; ignoreCase?: boolean } = {},
  ): Promise<GrepMatch[]> {
    return (await this.call("POST", "/files/grep", { pattern, ...options }, GrepReply, options.path)).matches;
  }

  commitAll(message: string): Promise<CommitResult> {
    return this.call("POST", "/git/commit", { message }, CommitReply);
  }

  /** Makes the workspace a checkout of `branch` at the tip of `bundle` (a git bundle containing that branch). */
  async receiveBranch(branch: string, bundle: Buffer): Promise<{ head: string; branch: string }> {
    const response = await this.send("POST", `/git/receive?branch=${encodeURIComponent(branch)}`, {
      body: new Uint8Array(bundle.buffer, bundle.byteOffset, bundle.byteLength),
      contentType: "application/octet-stream",
    });
    return this.parseJson(response, ReceiveReply);
  }

  /** Commits everything in the workspace, then returns a git bundle of `branch` and its head. */
  async bundleBranch(branch: string, message?: string): Promise<{ head: string; bundle: Buffer }> {
    const response = await this.send("POST", "/git/bundle", { json: { branch, message } });
    const head = ReceiveReply.shape.head.safeParse(response.headers.get(HEAD_HEADER));
    if (!head.success)
      throw new SidecarError(response.status, "BAD_REPLY", `bundle reply lacks a valid ${HEAD_HEADER}`);
    const bundle = Buffer.from(await this.guard(response.arrayBuffer()));
    return { head: head.data, bundle };
  }

  async runCommand(command: string, options: RunCommandOptions = {}): Promise<CommandResult> {
    const { signal } = options;
    if (signal?.aborted) return ABORTED;
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const response = await this.send(
        "POST",
        "/exec",
        { json: { command, env: options.env, timeoutMs: options.timeoutMs } },
        controller.signal,
      );
      if (!response.body) throw new SidecarError(response.status, "BAD_REPLY", "exec reply has no body");
      for await (const line of ndjsonLines(response.body)) {
        const event = this.parseEvent(line);
        if (event.type === "exit") {
          const { exitCode, signal: exitSignal, timedOut, aborted, limit } = event;
          return { exitCode, signal: exitSignal, timedOut, aborted, ...(limit ? { limit } : {}) };
        }
        // Awaited: a consumer that is behind slows the stream, and with it the sidecar and the command.
        await options.onOutput?.(event.type, event.data);
      }
      throw new SidecarError(response.status, "STREAM_ENDED", "the command's output ended without an exit status");
    } catch (error) {
      if (signal?.aborted) return ABORTED;
      if (error instanceof Error && error.name === "TypeError") {
        throw new SidecarError(0, "CONNECTION_LOST", "the connection to the sidecar broke during a command", {
          cause: error,
        });
      }
      throw error;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  private parseEvent(line: string): ExecEvent {
    try {
      return ExecEvent.parse(JSON.parse(line));
    } catch (error) {
      throw new SidecarError(200, "BAD_REPLY", "exec stream carried an invalid event", { cause: error });
    }
  }

  private async call<T>(
    method: "GET" | "POST",
    route: string,
    body: unknown,
    schema: z.ZodType<T>,
    path?: string,
  ): Promise<T> {
    const response = await this.send(method, route, body === undefined ? {} : { json: body }, undefined, path);
    return this.parseJson(response, schema);
  }

  private async parseJson<T>(response: Response, schema: z.ZodType<T>): Promise<T> {
    const text = await this.guard(response.text());
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new SidecarError(response.status, "BAD_REPLY", "sidecar reply is not JSON", { cause: error });
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new SidecarError(response.status, "BAD_REPLY", `unexpected sidecar reply: ${parsed.error.message}`);
    }
    return parsed.data;
  }

  /** Sends a request; a non-2xx answer becomes the matching typed error. */
  private async send(
    method: "GET" | "POST",
    route: string,
    payload: { json?: unknown; body?: Uint8Array; contentType?: string },
    signal?: AbortSignal,
    path?: string,
  ): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    let body: RequestInit["body"];
    if (payload.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(payload.json);
    } else if (payload.body) {
      headers["content-type"] = payload.contentType ?? "application/octet-stream";
      body = payload.body as RequestInit["body"];
    }
    const response = await this.guard(
      this.transport.fetch(`${this.transport.baseUrl}${route}`, {
        method,
        headers,
        body,
        signal: signal ?? AbortSignal.timeout(this.timeoutMs),
      }),
    );
    if (!response.ok) throw await errorFromResponse(response, path);
    return response;
  }

  /** Turns transport failures into SidecarErrors; typed errors pass through. */
  private async guard<T>(promise: Promise<T>): Promise<T> {
    try {
      return await promise;
    } catch (error) {
      if (error instanceof SidecarError) throw error;
      const name = (error as Error | undefined)?.name;
      if (name === "AbortError") throw error;
      if (name === "TimeoutError") {
        throw new SidecarError(0, "TIMEOUT", `sidecar at ${this.endpoint} did not answer in ${this.timeoutMs} ms`, {
          cause: error,
        });
      }
      throw new SidecarError(0, "UNREACHABLE", `sidecar at ${this.endpoint} is unreachable`, { cause: error });
    }
  }
}
