/**
 * The HTTP part shared by the fake model vendors (fake-anthropic.ts,
 * fake-openai-responses.ts): a server on 127.0.0.1 that records every
 * request (path, headers, parsed JSON body) before a scripted handler answers
 * it, and helpers to write server-sent events.
 *
 * Invariants: listens on 127.0.0.1 only, on a free port; a handler that
 * throws answers 500 with the error, so a broken script fails the test
 * loudly; close() ends open connections too.
 */
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { brotliDecompressSync, gunzipSync, inflateSync } from "node:zlib";

export interface RecordedRequest {
  method: string;
  /** Path and query, e.g. `/v1/messages?beta=true`. */
  path: string;
  headers: IncomingHttpHeaders;
  /** The JSON body, parsed; null when there was none. */
  body: Record<string, unknown> | null;
}

export interface RecordingServer {
  /** `http://127.0.0.1:<port>`. */
  origin: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export type Handler = (request: RecordedRequest, res: ServerResponse) => Promise<void>;

export async function startRecordingServer(handler: Handler): Promise<RecordingServer> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const raw = decode(Buffer.concat(chunks), req.headers["content-encoding"]);
      const request: RecordedRequest = {
        method: req.method ?? "GET",
        path: req.url ?? "/",
        headers: req.headers,
        body: raw.length > 0 ? (JSON.parse(raw.toString("utf8")) as Record<string, unknown>) : null,
      };
      requests.push(request);
      await handler(request, res);
    })().catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: `fake model server: ${String(error)}` } }));
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

/** Starts a server-sent-event stream; each call of the returned function writes one event. */
export function openEventStream(res: ServerResponse): (type: string, data: Record<string, unknown>) => void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  return (type, data) => {
    res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  };
}

/** Splits text into a few deltas, so clients must join a stream rather than read one chunk. */
export function deltas(text: string): string[] {
  const parts = text.match(/\S+\s*|\s+/g) ?? [text];
  return parts.length > 0 ? parts : [text];
}

function decode(body: Buffer, encoding: string | undefined): Buffer {
  if (!encoding || encoding === "identity" || body.length === 0) return body;
  if (encoding === "gzip") return gunzipSync(body);
  if (encoding === "deflate") return inflateSync(body);
  if (encoding === "br") return brotliDecompressSync(body);
  throw new Error(`request body in an encoding the fake cannot read: ${encoding}`);
}
