/**
 * The sidecar's routes: thin handlers that validate the body with the shared
 * protocol schemas, call the workspace executor or the git helpers, and
 * answer. Errors are thrown and answered in one place (server.ts).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  type LocalExecutor,
  packListTo,
  sidecarProtocol as protocol,
  readHead,
  saveWorkspace,
  tarFileList,
  trackedFilesIn,
  unpackInto,
} from "@repo/workspace";
import type { AgentBox } from "./agent-box";
import { archiveAgentState, assertAgentHome, restoreAgentState } from "./agent-state";
import { HttpError, readJson, sendJson } from "./http";
import type { LimitWatch } from "./limits";
import { assertBranchName, packObjects, receiveBranch, workspaceHaves } from "./workspace-git";

/** Limit for JSON bodies (file contents travel in them), bytes. */
const JSON_LIMIT = 32 * 1024 * 1024;
/** Limit for an uploaded environment archive, bytes. */
const ARCHIVE_LIMIT = 16 * 1024 * 1024 * 1024;

/** Limit for an uploaded agent state archive, bytes. */
const AGENT_STATE_LIMIT = 512 * 1024 * 1024;
/** How often a running command's sandbox is checked for refused forks (a fork bomb) and a full disk, ms. */
const LIMIT_POLL_MS = 250;

/** The agent's sandbox and the limits it runs under, when the sidecar is sandboxed. */
export interface SandboxContext {
  box: AgentBox;
  limits: LimitWatch;
}

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  executor: LocalExecutor;
  /** Registers a running command so that shutdown can stop it; returns the unregister function. */
  track: (controller: AbortController) => () => void;
  /** The agent's state directory, when this sandbox keeps one. */
  agentHome?: string;
  sandbox?: SandboxContext;
}

export type Route = (ctx: RouteContext) => Promise<void>;

async function health({ res, executor }: RouteContext) {
  const { head, branch } = await readHead(executor.root);
  sendJson(res, 200, { ok: true, workspace: executor.root, head, branch });
}

/** Liveness without git: the server's probe before a warm follow-up (the handler has already ensured the sandbox runs). */
async function alive({ res }: RouteContext) {
  sendJson(res, 200, { ok: true });
}

type Counters = Awaited<ReturnType<LimitWatch["counters"]>>;

/**
 * Watches a command's sandbox while it runs: refused forks mean a fork bomb,
 * which would hold the sandbox at its limit after the command returns, so
 * every agent process is stopped at once; a full volume is remembered even if
 * the command deletes what filled it.
 */
function watchLimits(sandbox: SandboxContext | undefined, before: Counters) {
  let hit: string | null = null;
  let diskFull = false;
  const timer = sandbox
    ? setInterval(() => {
        void sandbox.limits.pidsExceeded(before).then((message) => {
          if (message && !hit) {
            hit = message;
            sandbox.box.kill();
          }
        });
        void sandbox.limits.diskFull().then((full) => {
          diskFull ||= full;
        });
      }, LIMIT_POLL_MS)
    : undefined;
  return {
    stop: () => clearInterval(timer),
    hit: () => hit,
    sawDiskFull: () => diskFull,
  };
}

/** The limit a finished command hit, if any; a process limit also ends whatever the agent left running. */
async function limitVerdict(sandbox: SandboxContext | undefined, before: Counters, sawDiskFull: boolean) {
  if (!sandbox) return undefined;
  const verdict = await sandbox.limits.verdict(before, sawDiskFull);
  if (verdict && (await sandbox.limits.pidsExceeded(before))) sandbox.box.kill();
  return verdict;
}

async function exec({ req, res, executor, track, sandbox }: RouteContext) {
  const body = await readJson(req, protocol.ExecRequest, JSON_LIMIT);
  const controller = new AbortController();
  const untrack = track(controller);
  // A dropped connection is the client's way of cancelling the command.
  res.on("close", () => {
    if (!res.writableFinished) controller.abort();
  });
  res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
  res.flushHeaders();
  // Backpressure: while the server reads slower than the command writes, the command's output waits.
  const send = (event: protocol.ExecEvent): Promise<void> | undefined => {
    if (res.destroyed || res.write(`${JSON.stringify(event)}\n`)) return undefined;
    return new Promise((resolve) => {
      const done = () => {
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      res.on("drain", done);
      res.on("close", done);
    });
  };
  const before = sandbox ? await sandbox.limits.counters() : { oomKills: 0, pidsMax: 0, diskFull: false };
  const watch = watchLimits(sandbox, before);
  try {
    const result = await executor.runCommand(body.command, {
      signal: controller.signal,
      env: body.env,
      timeoutMs: body.timeoutMs,
      onOutput: (stream, data) => send({ type: stream, data }),
    });
    watch.stop();
    const limit = watch.hit() ?? (await limitVerdict(sandbox, before, watch.sawDiskFull()));
    if (limit) send({ type: "stderr", data: `\numbra: ${limit}\n` });
    send({ type: "exit", ...result, ...(limit ? { limit } : {}) });
    res.end();
  } finally {
    watch.stop();
    untrack();
  }
}

async function gitHaves({ res, url, executor }: RouteContext) {
  const query = protocol.HavesQuery.safeParse(Object.fromEntries(url.searchParams));
  if (!query.success) throw new HttpError(400, "VALIDATION_ERROR", "query parameter borrow is invalid");
  sendJson(res, 200, await workspaceHaves(executor.root, query.data.borrow));
}

async function gitTracked({ req, res, executor }: RouteContext) {
  const { pathspecs } = await readJson(req, protocol.TrackedFilesRequest, JSON_LIMIT);
  sendJson(res, 200, await trackedFilesIn(executor.root, pathspecs));
}

async function gitReceive({ req, res, url, executor }: RouteContext) {
  try {
    const query = protocol.ReceiveQuery.safeParse(Object.fromEntries(url.searchParams));
    if (!query.success) {
      throw new HttpError(400, "VALIDATION_ERROR", "query parameters branch, tip or borrow are missing or invalid");
    }
    const { branch, tip, borrow } = query.data;
    sendJson(res, 200, await receiveBranch(executor.root, branch, tip, req, borrow));
  } finally {
    // A refusal comes before the pack is read: drain it, so that the answer reaches the client.
    if (!req.readableEnded) req.resume();
  }
}

async function gitCommit({ req, res, executor }: RouteContext) {
  const body = await readJson(req, protocol.CommitRequest, JSON_LIMIT);
  sendJson(res, 200, await executor.commitAll(body.message));
}

async function gitSave({ req, res, executor }: RouteContext) {
  const body = await readJson(req, protocol.SaveRequest, JSON_LIMIT);
  assertBranchName(body.branch);
  sendJson(res, 200, await saveWorkspace(executor.root, body));
}

async function gitPack({ req, res, executor }: RouteContext) {
  const body = await readJson(req, protocol.PackRequest, JSON_LIMIT);
  const pack = await packObjects(executor.root, body.tip, body.exclude);
  res.writeHead(200, { "content-type": protocol.PACK_CONTENT_TYPE, "cache-control": "no-store" });
  // A failure after the headers went out cuts the connection (server.ts): the client sees a broken pack, never a short one.
  await pipeline(pack, res);
}

/** A tar archive of workspace paths (a cached environment being saved). Paths are checked before any byte goes out. */
async function archivePack({ req, res, executor }: RouteContext) {
  const { paths } = await readJson(req, protocol.ArchivePackRequest, JSON_LIMIT);
  const list = await tarFileList(executor.root, paths);
  res.writeHead(200, { "content-type": "application/x-tar", "cache-control": "no-store" });
  await packListTo(executor.root, list, res);
}

/** Extracts the tar archive in the body into the workspace (a cached environment being restored). */
async function archiveUnpack({ req, res, executor }: RouteContext) {
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > ARCHIVE_LIMIT)
        callback(new HttpError(413, "PAYLOAD_TOO_LARGE", `archive exceeds ${ARCHIVE_LIMIT} bytes`));
      else callback(null, chunk);
    },
  });
  let received = 0;
  req.pipe(counter);
  req.once("error", (error) => counter.destroy(error));
  await unpackInto(executor.root, counter);
  sendJson(res, 200, { ok: true });
}

async function agentStateArchive({ res, agentHome }: RouteContext) {
  const archive = await archiveAgentState(assertAgentHome(agentHome));
  res.writeHead(200, { "content-type": "application/gzip", "content-length": archive.length });
  res.end(archive);
}

async function agentStateRestore({ req, res, agentHome }: RouteContext) {
  const home = assertAgentHome(agentHome);
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      if (size > AGENT_STATE_LIMIT) {
        callback(new HttpError(413, "PAYLOAD_TOO_LARGE", `archive exceeds ${AGENT_STATE_LIMIT} bytes`));
      } else {
        callback(null, chunk);
      }
    },
  });
  const [restored] = await Promise.allSettled([restoreAgentState(home, req.pipe(counter))]);
  if (size > AGENT_STATE_LIMIT) {
    throw new HttpError(413, "PAYLOAD_TOO_LARGE", `archive exceeds ${AGENT_STATE_LIMIT} bytes`);
  }
  if (restored.status === "rejected") throw restored.reason;
  sendJson(res, 200, { ok: true });
}

export const routes: ReadonlyMap<string, Route> = new Map<string, Route>([
  ["GET /health", health],
  ["GET /alive", alive],
  [
    "POST /files/read",
    async ({ req, res, executor }) => {
      const { path } = await readJson(req, protocol.ReadFileRequest, JSON_LIMIT);
      sendJson(res, 200, { content: await executor.readFile(path) });
    },
  ],
  [
    "POST /files/write",
    async ({ req, res, executor }) => {
      const { path, content } = await readJson(req, protocol.WriteFileRequest, JSON_LIMIT);
      await executor.writeFile(path, content);
      sendJson(res, 200, { ok: true });
    },
  ],
  [
    "POST /files/edit",
    async ({ req, res, executor }) => {
      const body = await readJson(req, protocol.EditFileRequest, JSON_LIMIT);
      sendJson(res, 200, await executor.editFile(body.path, body.search, body.replace, { all: body.all }));
    },
  ],
  [
    "POST /files/list",
    async ({ req, res, executor }) => {
      const { path } = await readJson(req, protocol.ListDirRequest, JSON_LIMIT);
      sendJson(res, 200, { entries: await executor.listDir(path) });
    },
  ],
  [
    "POST /files/grep",
    async ({ req, res, executor }) => {
      const { pattern, ...options } = await readJson(req, protocol.GrepRequest, JSON_LIMIT);
      sendJson(res, 200, { matches: await executor.grep(pattern, options) });
    },
  ],
  ["POST /exec", exec],
  ["GET /git/haves", gitHaves],
  ["POST /git/tracked", gitTracked],
  ["POST /git/receive", gitReceive],
  ["POST /git/commit", gitCommit],
  ["POST /git/save", gitSave],
  ["POST /git/pack", gitPack],
  ["POST /archive/pack", archivePack],
  ["POST /archive/unpack", archiveUnpack],
  ["POST /agent-state/archive", agentStateArchive],
  ["POST /agent-state/restore", agentStateRestore],
]);
