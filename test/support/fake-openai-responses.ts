/**
 * A scripted OpenAI Responses API (`POST /v1/responses`, streaming) for tests
 * of the real Codex CLI: each request is answered with the next scripted
 * reply as the server-sent events OpenAI sends (response.created, output
 * items with their text or argument deltas, response.completed with usage),
 * or as an HTTP error.
 *
 * Invariants:
 * - With `apiKey`, a request whose `Authorization: Bearer` carries another
 *   key is refused with 401 — and the message quotes the key it got, the way
 *   a careless gateway would, so tests prove that the client redacts it.
 * - A request beyond the script gets 400 invalid_request_error.
 * - Every request is recorded (path, headers, body) before it is answered;
 *   `beforeReply` runs while the CLI waits for the answer.
 */
import type { ServerResponse } from "node:http";
import {
  deltas,
  openEventStream,
  type RecordedRequest,
  type RecordingServer,
  sendJson,
  startRecordingServer,
} from "./fake-model-server";

export type ResponsesReply = (
  | { text: string }
  | { functionCall: { name: string; arguments: Record<string, unknown> } }
  | { customToolCall: { name: string; input: string } }
  | { error: { status: number; message: string; code?: string } }
) & { usage?: { input: number; output: number } };

export interface FakeResponsesOptions {
  script: ResponsesReply[];
  /** The only key accepted; default: any. */
  apiKey?: string;
  /** Runs before each scripted reply is sent (index counts Responses requests from 0). */
  beforeReply?: (request: RecordedRequest, index: number) => Promise<void> | void;
}

export interface FakeResponses {
  /** OPENAI_BASE_URL for the CLI (ends in `/v1`). */
  baseUrl: string;
  requests: RecordedRequest[];
  /** The Responses requests only. */
  responseRequests(): RecordedRequest[];
  close(): Promise<void>;
}

export const DEFAULT_USAGE = { input: 13, output: 5 };

export async function startFakeResponses(options: FakeResponsesOptions): Promise<FakeResponses> {
  let next = 0;
  const server: RecordingServer = await startRecordingServer(async (request, res) => {
    if (request.method !== "POST" || request.path !== "/v1/responses") {
      sendJson(res, 404, { error: { message: `no route ${request.method} ${request.path}`, type: "not_found" } });
      return;
    }
    const key = request.headers.authorization?.replace(/^Bearer /, "");
    if (options.apiKey !== undefined && key !== options.apiKey) {
      sendJson(res, 401, {
        error: {
          message: `Incorrect API key provided: ${key}.`,
          type: "invalid_request_error",
          code: "invalid_api_key",
        },
      });
      return;
    }
    const index = next++;
    const reply = options.script[index];
    if (!reply) {
      sendJson(res, 400, { error: { message: "the fake model's script is exhausted", type: "invalid_request_error" } });
      return;
    }
    await options.beforeReply?.(request, index);
    if ("error" in reply) {
      sendJson(res, reply.error.status, {
        error: { message: reply.error.message, type: "invalid_request_error", code: reply.error.code ?? null },
      });
      return;
    }
    const model = typeof request.body?.model === "string" ? request.body.model : "gpt-fake";
    stream(res, reply, model, index + 1);
  });
  return {
    baseUrl: `${server.origin}/v1`,
    requests: server.requests,
    responseRequests: () => server.requests.filter((r) => r.path === "/v1/responses"),
    close: server.close,
  };
}

function stream(res: ServerResponse, reply: Exclude<ResponsesReply, { error: unknown }>, model: string, n: number) {
  const send = openEventStream(res);
  const usage = reply.usage ?? DEFAULT_USAGE;
  const response = { id: `resp_fake_${n}`, object: "response", model, status: "in_progress", output: [] as unknown[] };
  let sequence = 0;
  const event = (type: string, data: Record<string, unknown>) => send(type, { sequence_number: sequence++, ...data });
  event("response.created", { response });
  event("response.in_progress", { response });

  let item: Record<string, unknown>;
  if ("text" in reply) {
    const id = `msg_fake_${n}`;
    item = { type: "message", id, role: "assistant", status: "completed", content: [] };
    event("response.output_item.added", { output_index: 0, item: { ...item, status: "in_progress" } });
    const part = { type: "output_text", text: "", annotations: [] };
    event("response.content_part.added", { output_index: 0, item_id: id, content_index: 0, part });
    for (const delta of deltas(reply.text)) {
      event("response.output_text.delta", { output_index: 0, item_id: id, content_index: 0, delta });
    }
    event("response.output_text.done", { output_index: 0, item_id: id, content_index: 0, text: reply.text });
    const done = { ...part, text: reply.text };
    event("response.content_part.done", { output_index: 0, item_id: id, content_index: 0, part: done });
    item = { ...item, content: [done] };
  } else if ("functionCall" in reply) {
    const args = JSON.stringify(reply.functionCall.arguments);
    const id = `fc_fake_${n}`;
    item = { type: "function_call", id, call_id: `call_fake_${n}`, name: reply.functionCall.name, arguments: "" };
    event("response.output_item.added", { output_index: 0, item: { ...item, status: "in_progress" } });
    event("response.function_call_arguments.delta", { output_index: 0, item_id: id, delta: args });
    event("response.function_call_arguments.done", { output_index: 0, item_id: id, arguments: args });
    item = { ...item, arguments: args, status: "completed" };
  } else {
    const id = `ctc_fake_${n}`;
    item = { type: "custom_tool_call", id, call_id: `call_fake_${n}`, name: reply.customToolCall.name, input: "" };
    event("response.output_item.added", { output_index: 0, item: { ...item, status: "in_progress" } });
    event("response.custom_tool_call_input.delta", { output_index: 0, item_id: id, delta: reply.customToolCall.input });
    event("response.custom_tool_call_input.done", { output_index: 0, item_id: id, input: reply.customToolCall.input });
    item = { ...item, input: reply.customToolCall.input, status: "completed" };
  }
  event("response.output_item.done", { output_index: 0, item });
  event("response.completed", {
    response: {
      ...response,
      status: "completed",
      output: [item],
      usage: {
        input_tokens: usage.input,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: usage.output,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: usage.input + usage.output,
      },
    },
  });
  res.end();
}
