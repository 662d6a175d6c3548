/**
 * The sidecar's routes: thin handlers that validate the body with the shared
 * protocol schemas, call the workspace executor or the git helpers, and
 * answer. Errors are thrown and answered in one place (server.ts).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import { type LocalExecutor, sidecarProtocol as protocol, readHead, saveWorkspace } from "@repo/workspace";
import { HttpError, readJson, sendJson } from "./http";
import { assertBranchName, packObjects, receiveBranch, workspaceHaves } from "./workspace-git";

/** Limit for JSON bodies (file contents travel in them), bytes. */
const JSON_LIMIT = 32 * 1024 * 1024;

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  executor: LocalExecutor;
  /** Registers a running command so that shutdown can stop it; returns the unregister function. */
  track: (controller: AbortController) => () => void;
}

export type Route = (ctx: RouteContext) => Promise<void>;

async function health({ res, executor }: RouteContext) {
  const { head, branch } = await readHead(executor.root);
  sendJson(res, 200, { ok: true, workspace: executor.root, head, branch });
}

async function exec({ req, res, executor, track }: RouteContext) {
  const body = await readJson(req, protocol.ExecRequest, JSON_LIMIT);
  const controller = new AbortController();
  const untrack = track(controller);
  // A dropped connection is the client's way of cancelling the command.
  res.on("close", () => {
    if (!res.writableFinished) controller.abort();
  });
  res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
  res.flushHeaders();
  const send = (event: protocol.ExecEvent) => {
    if (!res.destroyed) res.write(`${JSON.stringify(event)}\n`);
  };
  try {
    const result = await executor.runCommand(body.command, {
      signal: controller.signal,
      env: body.env,
      timeoutMs: body.timeoutMs,
      onOutput: (stream, data) => send({ type: stream, data }),
    });
    send({ type: "exit", ...result });
    res.end();
  } finally {
    untrack();
  }
}

async function gitHaves({ res, executor }: RouteContext) {
  sendJson(res, 200, { commits: await workspaceHaves(executor.root) });
}

async function gitReceive({ req, res, url, executor }: RouteContext) {
  try {
    const query = protocol.ReceiveQuery.safeParse(Object.fromEntries(url.searchParams));
    if (!query.success) {
      throw new HttpError(400, "VALIDATION_ERROR", "query parameters branch and tip are missing or invalid");
    }
    sendJson(res, 200, await receiveBranch(executor.root, query.data.branch, query.data.tip, req));
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
  await assertBranchName(body.branch);
  sendJson(res, 200, await saveWorkspace(executor.root, body));
}

async function gitPack({ req, res, executor }: RouteContext) {
  const body = await readJson(req, protocol.PackRequest, JSON_LIMIT);
  const pack = await packObjects(executor.root, body.tip, body.exclude);
  res.writeHead(200, { "content-type": protocol.PACK_CONTENT_TYPE, "cache-control": "no-store" });
  // A failure after the headers went out cuts the connection (server.ts): the client sees a broken pack, never a short one.
  await pipeline(pack, res);
}

export const routes: ReadonlyMap<string, Route> = new Map<string, Route>([
  ["GET /health", health],
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
  ["POST /git/receive", gitReceive],
  ["POST /git/commit", gitCommit],
  ["POST /git/save", gitSave],
  ["POST /git/pack", gitPack],
]);
