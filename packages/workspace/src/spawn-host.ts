/**
 * Starting processes from a small helper process instead of from the server.
 *
 * Node starts a process by forking the caller, and a fork copies the page
 * tables of everything the caller has mapped. The server with its embedded
 * database maps hundreds of MiB, so each `git` it starts held its thread
 * 20–50 ms (up to 200 ms), during which no request, status event or stream
 * moved. The spawn host is a bare Node process started before the database
 * is opened; the server asks it over IPC to start a process, so the fork
 * copies the host's few MiB, and in another process.
 *
 * How a hosted process's standard streams reach the caller: the caller
 * listens on a unix socket in a private directory (mode 0700). For each
 * process the host connects once per piped stream, names the process and the
 * stream in a first line, and starts the process with those connections as
 * its stdin/stdout/stderr; it then closes its own copies and reports the pid.
 * The caller writes nothing to stdin before that report, so the host never
 * reads a byte meant for the process. Exit codes come back over IPC.
 *
 * Invariants:
 * - A hosted process looks like a ChildProcess to its caller: `stdin`,
 *   `stdout`, `stderr`, `pid` once started, and the events `spawn`, `error`,
 *   `exit` and `close` (after `exit` and the end of every stream).
 * - `whenStarted` gives the pid to act on (kill a group, lower a priority)
 *   as soon as there is one, so a stop asked before the host answered is not
 *   lost.
 * - Without a host (never started, or gone) `spawnProcess` starts the process
 *   directly; processes the host was starting when it died fail with an
 *   error, never hang.
 * - A `stdinFeed` makes the host itself send an HTTP request and pipe the
 *   reply's body into the process's stdin (a sandbox's pack into the store's
 *   git): the bytes never enter this process. Its result (bytes, first bytes,
 *   why it stopped short) is reported before the process's exit.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, type Readable, type Writable } from "node:stream";

export type StdioSlot = "pipe" | "ignore";

export interface SpawnOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** In a process group of its own (its pid is the group id). */
  detached?: boolean;
  stdio: [StdioSlot, StdioSlot, StdioSlot];
  /** Nicer than this process by this much (1–19; the result is capped at 19), from its first instruction. */
  lowerPriorityBy?: number;
  /**
   * Feeds the process's stdin from an HTTP reply, read by the spawn host (stdio[0] must be
   * "ignore": nothing of it passes through this process). Only with a running host.
   */
  stdinFeed?: StdinFeed;
}

/**
 * An HTTP request whose reply body becomes a process's stdin. The spawn host
 * sends it once the process has started and pipes the body in with
 * backpressure; the process reads the end of its input when the body ends.
 */
export interface StdinFeed {
  /** `unix:/absolute/socket` or `http://host:port`. */
  endpoint: string;
  method: "GET" | "POST";
  /** Path and query of the request. */
  path: string;
  /** Sent as they are (they may carry a credential: never logged, never in an argument). */
  headers: Record<string, string>;
  body?: string;
  /** The feed fails when no byte arrived for this long, ms. */
  idleTimeoutMs: number;
}

/** How a feed went: what it moved, and why it stopped short when it did. */
export interface FeedResult {
  bytes: number;
  /** The body's first FEED_HEAD_BYTES bytes (a pack's header, say). */
  head: Buffer;
  /**
   * Set when the body did not all go in: the reply's status (0 when there was none) and text,
   * and whether the process stopped it (exited, or closed its input) rather than the sender.
   */
  failure: { status: number; reply: string; message: string; byProcess: boolean } | null;
}

/** How much of a feed's start is kept for the caller. */
export const FEED_HEAD_BYTES = 16;

/** What callers use of a started process, hosted or direct. */
export interface SpawnedProcess extends EventEmitter {
  readonly pid?: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /** With a `stdinFeed`: how it went, known by the time of `exit`. */
  readonly feedResult?: FeedResult | null;
}

/** Runs `action` with the process's pid once it has one (at once when it has); never when it fails to start. */
export function whenStarted(child: SpawnedProcess, action: (pid: number) => void): void {
  if (child.pid !== undefined) action(child.pid);
  else child.once("spawn", () => child.pid !== undefined && action(child.pid));
}

/**
 * Starts a process through the spawn host when one runs, else directly. A
 * lower priority is given by starting it under `nice`, which execs it (same
 * pid) already lowered: lowered after the start, a process could have started
 * children of its own (git's helpers, an alias's shell) at the old priority.
 */
export function spawnProcess(file: string, args: readonly string[], options: SpawnOptions): SpawnedProcess {
  const step = options.lowerPriorityBy ?? 0;
  const [command, commandArgs] = step > 0 ? ["nice", ["-n", String(step), file, ...args]] : [file, [...args]];
  if (host && !host.gone) return host.spawn(command, commandArgs, options);
  if (options.stdinFeed) throw new Error("a stdin feed needs the spawn host (startSpawnHost)");
  return spawn(command, commandArgs, {
    cwd: options.cwd,
    env: options.env,
    detached: options.detached ?? false,
    stdio: options.stdio,
  });
}

/** Runs a program to its end and returns its stdout; rejects with its stderr unless it exits 0. */
export function runProgram(
  file: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawnProcess(file, args, {
      cwd: options.cwd ?? process.cwd(),
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (text: string) => {
      stdout += text;
    });
    child.stderr!.setEncoding("utf8").on("data", (text: string) => {
      stderr = (stderr + text).slice(-4000);
    });
    child.once("error", reject);
    child.once("close", (code: number | null, signal: NodeJS.Signals | null) => {
      if (code === 0) resolve(stdout);
      else {
        const how = code === null ? `was killed by ${signal ?? "a signal"}` : `exited with code ${code}`;
        reject(new Error(`${file} ${how}${stderr.trim() ? `: ${stderr.trim()}` : ""}`));
      }
    });
  });
}

let host: SpawnHost | null = null;
let starting: Promise<void> | null = null;

/**
 * Starts this process's spawn host; callers at the same moment share one
 * start, and later calls find it running. Call it before this process grows:
 * starting the host is this process's one large fork.
 */
export function startSpawnHost(): Promise<void> {
  if (host && !host.gone) return Promise.resolve();
  starting ??= SpawnHost.start().then(
    (started) => {
      host = started;
      starting = null;
    },
    (error: unknown) => {
      starting = null;
      throw error;
    },
  );
  return starting;
}

/** Ends the spawn host; later processes start directly. For tests. */
export async function stopSpawnHost(): Promise<void> {
  await starting?.catch(() => {});
  const current = host;
  host = null;
  await current?.stop();
}

/** The spawn host's pid while one runs. */
export function spawnHostPid(): number | undefined {
  return host && !host.gone ? host.pid : undefined;
}

/** Whether processes are started through a live spawn host. */
export function spawnHostRunning(): boolean {
  return host !== null && !host.gone;
}

type HostRequest = {
  type: "spawn";
  id: string;
  socket: string;
  file: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  detached: boolean;
  stdio: [StdioSlot, StdioSlot, StdioSlot];
  feed: StdinFeed | null;
};
type HostReport =
  | { type: "spawned"; id: string; pid: number }
  | { type: "fed"; id: string; bytes: number; head: string; failure: FeedResult["failure"] }
  | { type: "failed"; id: string; message: string; code?: string }
  | { type: "exit"; id: string; code: number | null; signal: NodeJS.Signals | null };

class HostedProcess extends EventEmitter implements SpawnedProcess {
  pid: number | undefined;
  feedResult: FeedResult | null = null;
  readonly stdin: PassThrough | null;
  readonly stdout: PassThrough | null;
  readonly stderr: PassThrough | null;
  private exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private openStreams: number;
  private stdinSocket: Socket | null = null;
  private done = false;

  constructor(stdio: [StdioSlot, StdioSlot, StdioSlot]) {
    super();
    this.stdin = stdio[0] === "pipe" ? new PassThrough() : null;
    this.stdout = stdio[1] === "pipe" ? new PassThrough() : null;
    this.stderr = stdio[2] === "pipe" ? new PassThrough() : null;
    this.openStreams = (this.stdout ? 1 : 0) + (this.stderr ? 1 : 0);
  }

  /** A connection from the host for stream `slot` of this process. */
  attach(slot: number, socket: Socket): void {
    if (slot === 0 && this.stdin) {
      this.stdinSocket = socket;
      socket.on("error", (error) => this.stdin?.destroy(error));
      // Ended, the pipe below ends the connection once all is written; destroyed, it is closed
      // at once. Either way the process reads the end of its input.
      const stdin = this.stdin;
      stdin.once("close", () => {
        if (!stdin.readableEnded) socket.destroy();
      });
      if (this.pid !== undefined) this.stdin.pipe(socket);
      return;
    }
    const stream = slot === 1 ? this.stdout : slot === 2 ? this.stderr : null;
    if (!stream) {
      socket.destroy();
      return;
    }
    socket.pipe(stream);
    socket.on("error", () => stream.end());
    // Closed once the caller has read it to the end (as a child's pipe is), or destroyed it; a
    // destroy closes the connection, and the process gets EPIPE.
    stream.once("close", () => {
      socket.destroy();
      this.streamClosed();
    });
  }

  started(pid: number): void {
    this.pid = pid;
    if (this.stdin && this.stdinSocket) this.stdin.pipe(this.stdinSocket);
    this.emit("spawn");
  }

  failed(error: Error): void {
    if (this.done) return;
    this.done = true;
    for (const stream of [this.stdin, this.stdout, this.stderr]) stream?.destroy();
    this.emit("error", error);
  }

  exited(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.done || this.exit) return;
    this.exit = { code, signal };
    this.emit("exit", code, signal);
    this.maybeClose();
  }

  private streamClosed(): void {
    this.openStreams--;
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.done || !this.exit || this.openStreams > 0) return;
    this.done = true;
    this.emit("close", this.exit.code, this.exit.signal);
  }
}

/** The host's own program; plain JavaScript so it runs under any loader, bundled or not. */
const HOST_PROGRAM = `
const { spawn } = require("node:child_process");
const { connect } = require("node:net");
const report = (message) => process.connected && process.send(message);
const open = (path, id, slot) => new Promise((resolve, reject) => {
  const socket = connect(path);
  socket.once("error", reject);
  socket.once("connect", () => socket.write(id + " " + slot + "\\n", (error) => (error ? reject(error) : resolve(socket))));
});
async function start(request) {
  const sockets = [];
  try {
    const stdio = [];
    for (let slot = 0; slot < 3; slot++) {
      if (request.stdio[slot] === "pipe") {
        const socket = await open(request.socket, request.id, slot);
        sockets.push(socket);
        stdio.push(socket);
      } else stdio.push("ignore");
    }
    if (request.feed) stdio[0] = "pipe";
    const child = spawn(request.file, request.args, { cwd: request.cwd, env: request.env, detached: request.detached, stdio });
    let fed = Promise.resolve();
    child.once("error", (error) => {
      for (const socket of sockets) socket.destroy();
      report({ type: "failed", id: request.id, message: error.message, code: error.code });
    });
    child.once("spawn", () => {
      for (const socket of sockets) socket.destroy();
      report({ type: "spawned", id: request.id, pid: child.pid });
      if (request.feed) fed = feed(child, request.feed).then((result) => report({ type: "fed", id: request.id, ...result }));
    });
    // The feed's report comes first: the caller has it when the process has exited.
    child.once("exit", (code, signal) => fed.then(() => report({ type: "exit", id: request.id, code, signal })));
  } catch (error) {
    for (const socket of sockets) socket.destroy();
    report({ type: "failed", id: request.id, message: String(error && error.message || error) });
  }
}
// Sends the request and pipes the reply's body into the child's stdin; settles once the body has
// gone in whole, or failed, or the child has exited.
function feed(child, spec) {
  return new Promise((resolve) => {
    let bytes = 0;
    let head = Buffer.alloc(0);
    let settled = false;
    const settle = (failure) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      if (failure) child.stdin.destroy();
      resolve({ bytes, head: head.toString("base64"), failure });
    };
    const fail = (status, reply, message, byProcess = false) => settle({ status, reply, message, byProcess });
    const timer = setTimeout(() => fail(0, "", "nothing arrived for " + spec.idleTimeoutMs + " ms"), spec.idleTimeoutMs);
    const target = spec.endpoint.startsWith("unix:")
      ? { socketPath: spec.endpoint.slice(5) }
      : { host: new URL(spec.endpoint).hostname.replace(/^\\[|\\]$/g, ""), port: new URL(spec.endpoint).port || 80 };
    const request = require("node:http").request({ ...target, method: spec.method, path: spec.path, headers: spec.headers });
    request.on("error", (error) => fail(0, "", error.message));
    request.on("response", (response) => {
      timer.refresh();
      if (response.statusCode < 200 || response.statusCode > 299) {
        let reply = "";
        response.setEncoding("utf8");
        response.on("data", (text) => { reply = (reply + text).slice(0, 16384); timer.refresh(); });
        response.on("end", () => fail(response.statusCode, reply, "answered " + response.statusCode));
        return;
      }
      response.on("data", (chunk) => {
        bytes += chunk.length;
        if (head.length < ${FEED_HEAD_BYTES}) head = Buffer.concat([head, chunk.subarray(0, ${FEED_HEAD_BYTES} - head.length)]);
        timer.refresh();
      });
      response.on("aborted", () => fail(0, "", "the reply broke off"));
      response.on("error", (error) => fail(0, "", "the reply broke off: " + error.message));
      response.on("end", () => settle(null));
      response.pipe(child.stdin);
    });
    child.stdin.on("error", (error) => fail(0, "", "the process stopped reading its input (" + error.code + ")", true));
    child.once("exit", () => fail(0, "", "the process exited before its input ended", true));
    request.end(spec.body);
  });
}
process.on("message", (request) => { if (request.type === "spawn") start(request); });
// The caller is gone (however it ended): remove its socket directory, named by the first argument.
process.on("disconnect", () => {
  try { require("node:fs").rmSync(process.argv[1], { recursive: true, force: true }); } catch {}
  process.exit(0);
});
`;

class SpawnHost {
  gone = false;
  private readonly pending = new Map<string, HostedProcess>();

  private constructor(
    private readonly child: ChildProcess,
    private readonly listener: Server,
    private readonly dir: string,
    private readonly socketPath: string,
  ) {
    child.on("message", (report: HostReport) => this.onReport(report));
    child.once("exit", () => this.onGone());
    // Neither may end this process: a failed send fails its own request (spawn's callback), and a
    // failed accept (out of descriptors) is no reason for the server to stop.
    child.on("error", () => {});
    listener.on("error", () => {});
    listener.on("connection", (socket) => this.onConnection(socket));
  }

  static async start(): Promise<SpawnHost> {
    const dir = mkdtempSync(join(tmpdir(), "umbra-spawn-"));
    const socketPath = join(dir, "s");
    const listener = createServer();
    await new Promise<void>((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(socketPath, () => resolve());
    });
    listener.unref();
    // Not this process's NODE_OPTIONS or loaders: the host is plain JavaScript.
    const child = spawn(process.execPath, ["--max-old-space-size=64", "-e", HOST_PROGRAM, dir], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      // Out of this process's group: a Ctrl-C or a signal to the group must leave it to start the
      // processes a graceful shutdown still runs (the saves of interrupted turns). It ends when
      // this process does, however that happens.
      detached: true,
    });
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
    const started = new SpawnHost(child, listener, dir, socketPath);
    started.refChannel();
    return started;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  spawn(file: string, args: readonly string[], options: SpawnOptions): HostedProcess {
    const id = randomBytes(16).toString("hex");
    const hosted = new HostedProcess(options.stdio);
    this.pending.set(id, hosted);
    // Kept until its streams are in too: an exit may be read before the connections are accepted.
    const forget = () => {
      this.pending.delete(id);
      this.refChannel();
    };
    hosted.once("close", forget);
    hosted.once("error", forget);
    this.refChannel();
    const request: HostRequest = {
      type: "spawn",
      id,
      socket: this.socketPath,
      file,
      args: [...args],
      cwd: options.cwd,
      env: options.env,
      detached: options.detached ?? false,
      stdio: options.stdio,
      feed: options.stdinFeed ?? null,
    };
    this.child.send(request, (error: Error | null) => {
      if (error) hosted.failed(error);
    });
    return hosted;
  }

  async stop(): Promise<void> {
    if (!this.gone) {
      const exited = new Promise((resolve) => this.child.once("exit", resolve));
      this.child.disconnect();
      await exited;
    }
  }

  private onReport(report: HostReport): void {
    const hosted = this.pending.get(report.id);
    if (!hosted) return;
    if (report.type === "spawned") hosted.started(report.pid);
    else if (report.type === "fed") {
      hosted.feedResult = { bytes: report.bytes, head: Buffer.from(report.head, "base64"), failure: report.failure };
    } else if (report.type === "failed") {
      hosted.failed(Object.assign(new Error(report.message), report.code ? { code: report.code } : {}));
    } else hosted.exited(report.code, report.signal);
  }

  /** The first line of a host connection names the process and the stream. */
  private onConnection(socket: Socket): void {
    let head = "";
    const onData = (chunk: Buffer) => {
      const text = head + chunk.toString("latin1");
      const end = text.indexOf("\n");
      if (end < 0) {
        head = text;
        if (head.length > 64) socket.destroy();
        return;
      }
      socket.off("data", onData);
      socket.pause();
      const [id, slot] = text.slice(0, end).split(" ");
      const rest = chunk.subarray(chunk.length - (text.length - end - 1));
      const hosted = this.pending.get(id ?? "");
      if (!hosted) {
        socket.destroy();
        return;
      }
      if (rest.length > 0) socket.unshift(rest);
      hosted.attach(Number(slot), socket);
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  }

  /** The IPC channel keeps this process alive exactly while a hosted process is unsettled. */
  private refChannel(): void {
    if (this.gone) return;
    if (this.pending.size > 0) this.child.channel?.ref();
    else this.child.channel?.unref();
  }

  private onGone(): void {
    this.gone = true;
    this.listener.close();
    rmSync(this.dir, { recursive: true, force: true });
    // A process it had started lives on (its streams still end it); one it had not cannot start.
    for (const hosted of [...this.pending.values()]) {
      if (hosted.pid === undefined) hosted.failed(new Error("the spawn host exited"));
      else hosted.exited(null, null);
    }
  }
}
