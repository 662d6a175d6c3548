/**
 * HTTP plumbing for the sidecar: reading bounded bodies, answering JSON, and
 * turning thrown errors into the `{"error":{"code","message"}}` shape.
 *
 * Invariant: every error a handler throws is answered with a deliberate
 * status; bad input never becomes a 500.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { GitError, SaveRefusedError, WorkspaceOperationError, WorkspacePathError } from "@repo/workspace";
import type { z } from "zod";

/** An error with the HTTP status and code it should be answered with. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "HttpError";
  }
}

const OPERATION_STATUS: Record<WorkspaceOperationError["code"], number> = {
  NOT_FOUND: 404,
  NOT_A_FILE: 400,
  NOT_A_DIRECTORY: 400,
  NO_MATCH: 409,
  AMBIGUOUS_MATCH: 409,
  TOO_LARGE: 413,
  INVALID: 400,
};

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

export interface ErrorAnswer {
  status: number;
  body: { error: { code: string; message: string; reason?: string } };
}

/** The answer for a thrown error; unknown errors become a 500 whose message hides internals. */
export function errorAnswer(error: unknown): ErrorAnswer {
  const answer = (status: number, code: string, message: string, reason?: string): ErrorAnswer => ({
    status,
    body: { error: reason === undefined ? { code, message } : { code, message, reason } },
  });
  if (error instanceof HttpError) return answer(error.status, error.code, error.message);
  if (error instanceof WorkspacePathError) return answer(403, "PATH_REFUSED", error.message, error.reason);
  if (error instanceof WorkspaceOperationError) return answer(OPERATION_STATUS[error.code], error.code, error.message);
  if (error instanceof SaveRefusedError) return answer(409, error.code, error.message);
  if (error instanceof GitError) return answer(500, "GIT_FAILED", error.message);
  return answer(500, "INTERNAL", "internal error");
}

/** Reads the whole body, refusing more than `limit` bytes. */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(413, "PAYLOAD_TOO_LARGE", `request body exceeds ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Reads a JSON body and validates it; any problem is a 400 VALIDATION_ERROR. */
export async function readJson<T>(req: IncomingMessage, schema: z.ZodType<T>, limit: number): Promise<T> {
  const raw = await readBody(req, limit);
  let value: unknown;
  try {
    value = JSON.parse(raw.toString("utf8") || "{}");
  } catch {
    throw new HttpError(400, "VALIDATION_ERROR", "request body is not valid JSON");
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join(".") || "body"}: ${issue.message}`);
    throw new HttpError(400, "VALIDATION_ERROR", issues.join("; "));
  }
  return parsed.data;
}
