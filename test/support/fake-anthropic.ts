/**
 * A scripted Anthropic Messages API (`POST /v1/messages`) for tests of the
 * real Claude Code CLI: each request is answered with the next scripted
 * reply, streamed as server-sent events the way Anthropic sends them
 * (message_start, content blocks with text and input_json deltas,
 * message_delta with the stop reason and usage, message_stop).
 *
 * Invariants:
 * - With `apiKey`, a request carrying another `x-api-key` is refused with
 *   401 authentication_error, as the real API does.
 * - A request beyond the script is refused with 400, which the CLI does not
 *   retry, so a test that loops too long fails at once.
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

export type AnthropicReply = (
  | { text: string }
  | { toolUse: { name: string; input: Record<string, unknown> }; text?: string }
  | { error: { status: number; type: string; message: string } }
) & { usage?: { input: number; output: number } };

export interface FakeAnthropicOptions {
  script: AnthropicReply[];
  /** The only key accepted; default: any. */
  apiKey?: string;
  /** Runs before each scripted reply is sent (index counts Messages requests from 0). */
  beforeReply?: (request: RecordedRequest, index: number) => Promise<void> | void;
}

export interface FakeAnthropic {
  /** ANTHROPIC_BASE_URL for the CLI (no `/v1`). */
  baseUrl: string;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** The Messages requests only. */
  messageRequests(): RecordedRequest[];
  close(): Promise<void>;
}

export const DEFAULT_USAGE = { input: 11, output: 7 };

export async function startFakeAnthropic(options: FakeAnthropicOptions): Promise<FakeAnthropic> {
  let next = 0;
  let toolIds = 0;
  const server: RecordingServer = await startRecordingServer(async (request, res) => {
    const path = request.path.split("?")[0];
    if (request.method !== "POST" || path !== "/v1/messages") {
      sendJson(res, 404, { type: "error", error: { type: "not_found_error", message: `no route ${request.path}` } });
      return;
    }
    if (options.apiKey !== undefined && request.headers["x-api-key"] !== options.apiKey) {
      sendJson(res, 401, { type: "error", error: { type: "authentication_error", message: "invalid x-api-key" } });
      return;
    }
    const index = next++;
    const reply = options.script[index];
    if (!reply) {
      sendJson(res, 400, {
        type: "error",
        error: { type: "invalid_request_error", message: "the fake model's script is exhausted" },
      });
      return;
    }
    await options.beforeReply?.(request, index);
    if ("error" in reply) {
      sendJson(res, reply.error.status, {
        type: "error",
        error: { type: reply.error.type, message: reply.error.message },
      });
      return;
    }
    const model = typeof request.body?.model === "string" ? request.body.model : "claude-fake";
    stream(res, reply, model, `msg_fake_${index + 1}`, () => `toolu_fake_${++toolIds}`);
  });
  return {
    baseUrl: server.origin,
    requests: server.requests,
    messageRequests: () => server.requests.filter((r) => r.path.split("?")[0] === "/v1/messages"),
    close: server.close,
  };
}

function stream(
  res: ServerResponse,
  reply: Exclude<AnthropicReply, { error: unknown }>,
  model: string,
  id: string,
  toolId: () => string,
): void {
  const usage = reply.usage ?? DEFAULT_USAGE;
  const send = openEventStream(res);
  send("message_start", {
    message: {
      id,
      type: "message",
      role: "assistant",
      model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: usage.input, output_tokens: 1 },
    },
  });
  let index = 0;
  const text = "toolUse" in reply ? reply.text : reply.text;
  if (text) {
    send("content_block_start", { index, content_block: { type: "text", text: "" } });
    for (const delta of deltas(text)) {
      send("content_block_delta", { index, delta: { type: "text_delta", text: delta } });
    }
    send("content_block_stop", { index });
    index += 1;
  }
  if ("toolUse" in reply) {
    const { name, input } = reply.toolUse;
    send("content_block_start", { index, content_block: { type: "tool_use", id: toolId(), name, input: {} } });
    const json = JSON.stringify(input);
    const cut = Math.floor(json.length / 2);
    for (const partial of [json.slice(0, cut), json.slice(cut)]) {
      send("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: partial } });
    }
    send("content_block_stop", { index });
  }
  send("message_delta", {
    delta: { stop_reason: "toolUse" in reply ? "tool_use" : "end_turn", stop_sequence: null },
    usage: { output_tokens: usage.output },
  });
  send("message_stop", {});
  res.end();
}
