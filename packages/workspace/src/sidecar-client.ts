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
 * - Git packs stream in both directions and are never held in memory; a
 *   transfer is limited by inactivity (nothing moved for the request limit),
 *   not by its total duration, so any size of repository gets through.
 * - Two transports: `http://host:port` (a pod) and `unix:/absolute/path` (a
 *   sandbox on this host, whose sidecar listens on a socket in the sandbox's
 *   directory: nothing on the host's network can reach it, or sniff it).
 */
import { createReadStream, createWriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { Agent, fetch as undiciFetch } from "undici";
import type { z } from "zod";
import { byteLimit, type WorkspaceArchiver } from "./archive";
import type { FeedError } from "./git";
import {
  CommitReply,
  EditFileReply,
  ErrorReply,
  ExecEvent,
  GrepReply,
  HavesReply,
  HealthReply,
  ListDirReply,
  OkReply,
  PACK_CONTENT_TYPE,
  ReadFileReply,
  ReceiveReply,
  SaveReply,
  type SidecarHealth,
  TrackedFilesReply,
} from "./sidecar-protocol";
import type { StdinFeed } from "./spawn-host";
import type { CommandResult, CommitResult, DirEntry, GrepMatch, RunCommandOptions, ToolExecutor } from "./types";
import { WORKSPACE_OPERATION_ERROR_CODES, WorkspaceOperationError, WorkspacePathError } from "./types";

export interface SidecarClientOptions {
  /** Where the sidecar listens: a base URL (`http://10.0.0.7:8080`) or a unix socket (`unix:/path/sidecar.sock`). */
  endpoint: string;
  /** The sandbox's bearer token. */
  token: string;
  /**
   * Limit for each request except /exec (which runs until the command ends), in milliseconds. Default 120000.
   * For git transfers it is the longest time without progress.
   */
  timeoutMs?: number;
  /** Limit for moving an archive in or out (/archive/*) and for a save's commit (/git/save), in milliseconds. Default 600000. */
  transferTimeoutMs?: number;
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
  return errorFromReply(response.status, await response.text().catch(() => ""), path);
}

function errorFromReply(status: number, text: string, path?: string): Error {
  let body: ErrorReply | undefined;
  try {
    body = ErrorReply.parse(JSON.parse(text));
  } catch {
    return new SidecarError(status, "BAD_REPLY", `sidecar answered ${status}: ${text.slice(0, 200)}`);
  }
  const { code, message, reason } = body.error;
  if (code === "PATH_REFUSED") return new WorkspacePathError(path ?? "", reason ?? message);
  if (OPERATION_CODES.has(code)) {
    return new WorkspaceOperationError(code as WorkspaceOperationError["code"], message);
  }
  return new SidecarError(status, code, message);
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

/** Aborts when nothing moved for `ms`: `touch()` on progress restarts the wait, `done()` ends it. */
class IdleDeadline {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;

  constructor(ms: number) {
    this.timer = setTimeout(() => {
      this.controller.abort(new DOMException(`no progress for ${ms} ms`, "TimeoutError"));
    }, ms);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  touch(): void {
    this.timer.refresh();
  }

  done(): void {
    clearTimeout(this.timer);
  }
}

/** Passes `source` through, calling `touch` for every chunk and once more at its end. */
async function* withProgress(source: AsyncIterable<Uint8Array>, touch: () => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    touch();
    yield chunk;
  }
  touch();
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

export class SidecarClient implements ToolExecutor, WorkspaceArchiver {
  private readonly endpoint: string;
  private readonly token: string;
  private readonly timeoutMs: number;
  private readonly transferTimeoutMs: number;
  private readonly transport: { baseUrl: string; fetch: Fetch };

  constructor(options: SidecarClientOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, "");
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.transferTimeoutMs = options.transferTimeoutMs ?? 600_000;
    this.transport = transportFor(this.endpoint);
  }

  health(): Promise<SidecarHealth> {
    return this.call("GET", "/health", undefined, HealthReply);
  }

  /**
   * Whether the sidecar answers (and its agent's sandbox runs), without
   * reading the workspace: no git, so a warm follow-up's probe costs one round
   * trip. A sidecar older than this route answers NOT_FOUND ("no route");
   * /health answers for it.
   */
  async alive(): Promise<{ ok: true }> {
    try {
      return await this.call("GET", "/alive", undefined, OkReply);
    } catch (error) {
      // The sidecar's 404 code is NOT_FOUND, which the client reads as a WorkspaceOperationError.
      if (error instanceof WorkspaceOperationError && error.code === "NOT_FOUND") return this.health();
      throw error;
    }
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

  /**
   * Commits the workspace has, newest first (a sender leaves out what their
   * histories hold). `borrow`: a directory of upstream objects offered to the
   * workspace; `borrows` says whether a receive will borrow it (the workspace
   * has no repository yet and can read it).
   */
  async haves(borrow?: string): Promise<{ commits: string[]; borrows: boolean }> {
    const query = borrow ? `?${new URLSearchParams({ borrow })}` : "";
    const reply = await this.call("GET", `/git/haves${query}`, undefined, HavesReply);
    return { commits: reply.commits, borrows: reply.borrows === true };
  }

  /**
   * Streams `pack` (a git pack, thin allowed, holding the objects of `tip`'s
   * history the workspace lacks) into the workspace, then makes the
   * workspace a checkout of `branch` at `tip`. A new repository borrows the
   * objects of `borrow` (see haves).
   */
  async receiveBranch(
    branch: string,
    tip: string,
    pack: AsyncIterable<Uint8Array>,
    borrow?: string,
  ): Promise<ReceiveReply> {
    const deadline = new IdleDeadline(this.timeoutMs);
    try {
      const query = new URLSearchParams({ branch, tip, ...(borrow ? { borrow } : {}) });
      const response = await this.send(
        "POST",
        `/git/receive?${query}`,
        { stream: withProgress(pack, () => deadline.touch()), contentType: PACK_CONTENT_TYPE },
        deadline.signal,
      );
      return await this.parseJson(response, ReceiveReply);
    } finally {
      deadline.done();
    }
  }

  /**
   * Saves whatever the workspace holds onto `branch`, descending from `base`
   * (the last saved commit; see saveWorkspace), and leaves the workspace on it.
   */
  async saveBranch(branch: string, base: string, message: string): Promise<SaveReply> {
    // Committing hashes and compresses every new file in the sandbox, a large one for as long as a transfer takes.
    const response = await this.send(
      "POST",
      "/git/save",
      { json: { branch, base, message } },
      AbortSignal.timeout(this.transferTimeoutMs),
    );
    return this.parseJson(response, SaveReply);
  }

  /**
   * A git pack (thin: its deltas may refer to objects of the excluded
   * histories) of what `tip`'s history holds beyond the `exclude` commits'
   * histories, as a stream. Destroying the stream ends the transfer.
   */
  async packObjects(tip: string, exclude: readonly string[]): Promise<Readable> {
    const deadline = new IdleDeadline(this.timeoutMs);
    try {
      const response = await this.send("POST", "/git/pack", { json: { tip, exclude } }, deadline.signal);
      if (!response.body) throw new SidecarError(response.status, "BAD_REPLY", "pack reply has no body");
      const body = response.body as unknown as WebReadableStream<Uint8Array>;
      const stream = Readable.from(
        withProgress(body, () => deadline.touch()),
        { objectMode: false },
      );
      stream.once("close", () => deadline.done());
      return stream;
    } catch (error) {
      deadline.done();
      throw error;
    }
  }

  /**
   * packObjects as a StdinFeed: the same request, for the spawn host to pipe
   * straight into a process (git index-pack), so that the pack never passes
   * through this process. It fails when nothing moved for the request limit.
   */
  packObjectsFeed(tip: string, exclude: readonly string[]): StdinFeed {
    // The URL this client's own request would use; a unix socket's host part is never resolved.
    const url = new URL(`${this.transport.baseUrl}/git/pack`);
    return {
      endpoint: this.endpoint.startsWith(UNIX_PREFIX) ? this.endpoint : url.origin,
      method: "POST",
      path: url.pathname,
      headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
      body: JSON.stringify({ tip, exclude }),
      idleTimeoutMs: this.timeoutMs,
    };
  }

  /** The error this client would have thrown for the request a feed made (see packObjectsFeed). */
  feedError(error: FeedError): Error {
    if (error.status !== 0) return errorFromReply(error.status, error.reply);
    return new SidecarError(0, "UNREACHABLE", `sidecar at ${this.endpoint}: ${error.message}`, { cause: error });
  }

  /** The workspace's root and its tracked files matching `pathspecs` (see WorkspaceArchiver). */
  trackedFiles(pathspecs: readonly string[]): Promise<{ root: string; records: string }> {
    return this.call("POST", "/git/tracked", { pathspecs }, TrackedFilesReply);
  }

  /** Writes the tar archive of `paths` in the workspace to `file` on this machine; returns its size. */
  async packPaths(paths: readonly string[], file: string, options: { limitBytes?: number } = {}): Promise<number> {
    const response = await this.send(
      "POST",
      "/archive/pack",
      { json: { paths } },
      AbortSignal.timeout(this.transferTimeoutMs),
    );
    if (!response.body) throw new SidecarError(response.status, "BAD_REPLY", "pack reply has no body");
    let bytes = 0;
    const counter = byteLimit(options.limitBytes ?? Number.POSITIVE_INFINITY, (n) => {
      bytes = n;
    });
    const body = Readable.fromWeb(response.body as unknown as WebReadableStream<Uint8Array>);
    try {
      await pipeline(body, counter, createWriteStream(file, { mode: 0o600 }));
    } catch (error) {
      if (error instanceof WorkspaceOperationError) throw error;
      throw new SidecarError(0, "CONNECTION_LOST", "the archive from the sidecar broke off", { cause: error });
    }
    return bytes;
  }

  /** Sends the tar archive `file` of this machine and extracts it into the workspace. */
  async unpackArchive(file: string): Promise<void> {
    const { size } = await stat(file);
    const response = await this.send(
      "POST",
      "/archive/unpack",
      { stream: createReadStream(file), contentType: "application/x-tar", contentLength: size },
      AbortSignal.timeout(this.transferTimeoutMs),
    );
    await this.parseJson(response, OkReply);
  }

  /** A gzipped tar archive of the sandbox's agent state directory (SIDECAR_AGENT_HOME). */
  async archiveAgentState(): Promise<Buffer> {
    const response = await this.send("POST", "/agent-state/archive", {});
    return Buffer.from(await this.guard(response.arrayBuffer()));
  }

  /** Replaces the sandbox's agent state directory's content with an archive from archiveAgentState. */
  async restoreAgentState(archive: Buffer): Promise<void> {
    const response = await this.send("POST", "/agent-state/restore", {
      stream: (async function* () {
        yield new Uint8Array(archive.buffer, archive.byteOffset, archive.byteLength);
      })(),
      contentType: "application/gzip",
    });
    await this.parseJson(response, OkReply);
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
    payload: { json?: unknown; stream?: AsyncIterable<Uint8Array>; contentType?: string; contentLength?: number },
    signal?: AbortSignal,
    path?: string,
  ): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    let body: RequestInit["body"];
    if (payload.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(payload.json);
    } else if (payload.stream) {
      headers["content-type"] = payload.contentType ?? "application/octet-stream";
      if (payload.contentLength !== undefined) headers["content-length"] = String(payload.contentLength);
      body = payload.stream as unknown as RequestInit["body"];
    }
    const response = await this.guard(
      this.transport.fetch(`${this.transport.baseUrl}${route}`, {
        method,
        headers,
        body,
        // A streamed body goes out as it is produced (fetch requires saying so).
        ...(payload.stream ? { duplex: "half" as const } : {}),
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
