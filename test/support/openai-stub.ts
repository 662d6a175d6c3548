/**
 * A scripted OpenAI-compatible chat endpoint for tests: POST
 * /v1/chat/completions answers each request with the next scripted reply, as
 * a server-sent-event stream the way OpenAI, Ollama and vLLM send it. It lets
 * tests drive the real provider wiring (HTTP, SSE parsing, tool-call
 * encoding) without a model. Requests are recorded for assertions.
 *
 * Invariants: listens on 127.0.0.1 on a free port; a request beyond the
 * script is answered 500 so a test that loops too long fails loudly.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type StubReply =
  | { text: string }
  | { toolCalls: Array<{ name: string; arguments: Record<string, unknown> }> }
  | { status: number; message: string };

export interface OpenAiStub {
  /** Base URL to configure as LLM_BASE_URL, ending in /v1. */
  baseUrl: string;
  /** Parsed JSON bodies of the chat requests received, in order. */
  requests: Array<Record<string, unknown>>;
  /** Authorization headers received, in order. */
  authorizations: Array<string | undefined>;
  close(): Promise<void>;
}

export async function startOpenAiStub(script: StubReply[]): Promise<OpenAiStub> {
  const requests: Array<Record<string, unknown>> = [];
  const authorizations: Array<string | undefined> = [];
  let next = 0;

  const server = createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: String(error) } }));
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: `no route ${req.method} ${req.url}` } }));
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    requests.push(JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>);
    authorizations.push(req.headers.authorization);

    const reply = script[next++];
    if (!reply) {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "the stub's script is exhausted" } }));
      return;
    }
    if ("status" in reply) {
      res.writeHead(reply.status, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: reply.message, type: "invalid_request_error" } }));
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    for (const event of events(reply, next)) res.write(`data: ${JSON.stringify(event)}\n\n`);
    res.end("data: [DONE]\n\n");
  }

  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;

  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    authorizations,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

function events(reply: Exclude<StubReply, { status: number }>, sequence: number): object[] {
  const base = { id: `chatcmpl-${sequence}`, object: "chat.completion.chunk", created: 1_700_000_000, model: "stub" };
  const chunk = (delta: object, finishReason: string | null) => ({
    ...base,
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  });
  const usage = { ...base, choices: [], usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } };

  if ("text" in reply) {
    // Split the text so the client has to reassemble deltas.
    const half = Math.ceil(reply.text.length / 2);
    return [
      chunk({ role: "assistant", content: reply.text.slice(0, half) }, null),
      chunk({ content: reply.text.slice(half) }, null),
      chunk({}, "stop"),
      usage,
    ];
  }
  const calls = reply.toolCalls.map((call, index) =>
    chunk(
      {
        ...(index === 0 ? { role: "assistant", content: null } : {}),
        tool_calls: [
          {
            index,
            id: `call_${sequence}_${index}`,
            type: "function",
            function: { name: call.name, arguments: JSON.stringify(call.arguments) },
          },
        ],
      },
      null,
    ),
  );
  return [...calls, chunk({}, "tool_calls"), usage];
}
