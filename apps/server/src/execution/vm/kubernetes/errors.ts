/**
 * Errors from the Kubernetes API, translated into one typed error.
 *
 * The client library throws `ApiException` with the response body as raw text
 * and a message that dumps headers; operators need the HTTP status and the API
 * server's own sentence instead (for a 403 that sentence names the RBAC verb,
 * resource and namespace that were refused). Invariants:
 * - every failed API call made by the kubernetes provider surfaces as a
 *   `KubernetesApiError`, with `statusCode` null when no response came back;
 * - the message never contains request bodies, so a Secret's token cannot leak
 *   through an error.
 */
import { ApiException } from "@kubernetes/client-node";
import { z } from "zod";
import { WorkspaceError } from "../../../errors";

/** The `Status` object the API server answers failures with (meta/v1). */
const statusBodySchema = z.object({
  kind: z.literal("Status").optional(),
  message: z.string().optional(),
  reason: z.string().optional(),
  code: z.number().optional(),
});

/** Statuses where repeating the same call later may succeed. */
const RETRYABLE_STATUSES = new Set([408, 409, 429, 500, 502, 503, 504]);

export class KubernetesApiError extends WorkspaceError {
  constructor(
    /** What was attempted, e.g. `create pod umbra-vm-1a2b3c4d-9f8e7d`. */
    readonly operation: string,
    /** HTTP status of the API's answer; null when the API could not be reached. */
    readonly statusCode: number | null,
    /** The Status `reason` (Forbidden, NotFound, AlreadyExists, ...), when the API gave one. */
    readonly reason: string | null,
    /** The API server's own explanation, verbatim. */
    readonly apiMessage: string,
    options?: { cause?: unknown },
  ) {
    const status = statusCode === null ? "no response" : `${statusCode}${reason ? ` ${reason}` : ""}`;
    super(
      `kubernetes API: ${operation} failed (${status}): ${apiMessage}`,
      null,
      statusCode === null || RETRYABLE_STATUSES.has(statusCode),
      options,
    );
    this.name = "KubernetesApiError";
  }

  get notFound(): boolean {
    return this.statusCode === 404;
  }
}

function parseStatusBody(body: unknown): z.infer<typeof statusBodySchema> | null {
  let value = body;
  if (typeof body === "string") {
    try {
      value = JSON.parse(body);
    } catch {
      return body.trim() ? { message: body.trim().slice(0, 500) } : null;
    }
  }
  const parsed = statusBodySchema.safeParse(value);
  return parsed.success ? parsed.data : null;
}

/** Converts anything a client call threw into a `KubernetesApiError`. */
export function toKubernetesApiError(operation: string, error: unknown): KubernetesApiError {
  if (error instanceof KubernetesApiError) return error;
  if (error instanceof ApiException) {
    const code = typeof error.code === "number" ? error.code : null;
    const status = parseStatusBody(error.body);
    const fallback =
      code === 401
        ? "the API server rejected the credentials; check the kubeconfig or service account token"
        : "the API server gave no explanation";
    return new KubernetesApiError(operation, code, status?.reason ?? null, status?.message ?? fallback, {
      cause: error,
    });
  }
  const detail = error instanceof Error ? error.message : String(error);
  return new KubernetesApiError(operation, null, null, `the API server could not be reached: ${detail}`, {
    cause: error,
  });
}

/** Runs one API call, translating its failure. */
export async function callApi<T>(operation: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw toKubernetesApiError(operation, error);
  }
}

/** Like `callApi`, but a 404 answer yields `null`: for reads and deletes of things that may be gone. */
export async function callApiAllowMissing<T>(operation: string, call: () => Promise<T>): Promise<T | null> {
  try {
    return await call();
  } catch (error) {
    const converted = toKubernetesApiError(operation, error);
    if (converted.notFound) return null;
    throw converted;
  }
}
