/**
 * The HTTP API client (SPEC §5). Every response body is parsed with the zod
 * schemas of @repo/types, so a server that drifts from the contract fails
 * loudly here instead of rendering half a task. Errors come back as ApiError
 * carrying the server's `{error: {code, message}}`.
 */
import {
  type BranchesResponse,
  BranchesResponseSchema,
  type CreateTaskBody,
  type DiffResponse,
  DiffResponseSchema,
  ErrorBodySchema,
  type MessageDto,
  MessageListResponseSchema,
  type TaskFilesResponse,
  TaskFilesResponseSchema,
} from "@repo/types";
import { z } from "zod";
import { type Config, ConfigSchema, type Task, TaskListResponseSchema, TaskResponseSchema } from "./schemas";

/** What the new-task form sends: the SPEC §5 body; agent, model and delivery only to servers that offer them. */
export type CreateTaskRequest = CreateTaskBody & { agent?: string; model?: string; delivery?: string };

/** Error codes of the API plus the two the client itself produces. */
export type ClientErrorCode = z.infer<typeof ErrorBodySchema>["error"]["code"] | "NETWORK" | "BAD_RESPONSE";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ClientErrorCode,
    message: string,
    /** The raw error body, for fields beyond code and message. */
    readonly body?: unknown,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export interface ApiClientOptions {
  /** Prefix of every path; "" for the page's own origin. */
  baseUrl?: string;
  fetch?: typeof fetch;
  getToken?: () => string | null;
  /** Called on every 401 answer. */
  onUnauthorized?: () => void;
}

export function createApiClient(options: ApiClientOptions = {}) {
  const baseUrl = options.baseUrl ?? "";
  const doFetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));

  function headersFor(body: unknown): Record<string, string> {
    const headers: Record<string, string> = { accept: "application/json" };
    const token = options.getToken?.();
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    return headers;
  }

  async function request<T>(method: string, path: string, schema: z.ZodType<T> | null, body?: unknown): Promise<T> {
    const headers = headersFor(body);
    let response: Response;
    try {
      response = await doFetch(`${baseUrl}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (cause) {
      throw new ApiError(0, "NETWORK", `The server cannot be reached (${(cause as Error).message ?? cause})`);
    }

    const text = await response.text();
    let json: unknown = null;
    if (text.length > 0) {
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
    }

    if (!response.ok) {
      if (response.status === 401) options.onUnauthorized?.();
      const parsed = ErrorBodySchema.safeParse(json);
      if (parsed.success) {
        throw new ApiError(response.status, parsed.data.error.code, parsed.data.error.message, json);
      }
      const code = response.status === 401 ? "UNAUTHORIZED" : response.status === 404 ? "NOT_FOUND" : "INTERNAL";
      throw new ApiError(response.status, code, `${method} ${path} failed with HTTP ${response.status}`, json);
    }

    if (schema === null) return undefined as T;
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new ApiError(
        response.status,
        "BAD_RESPONSE",
        `Unexpected answer from ${method} ${path}: ${z.prettifyError(parsed.error)}`,
        json,
      );
    }
    return parsed.data;
  }

  const taskPath = (id: string, suffix = "") => `/api/tasks/${encodeURIComponent(id)}${suffix}`;
  const unwrapTask = (r: { task: Task }) => r.task;

  return {
    health: () => request("GET", "/api/health", z.object({ ok: z.literal(true) })),
    getConfig: (): Promise<Config> => request("GET", "/api/config", ConfigSchema),
    listTasks: (): Promise<Task[]> => request("GET", "/api/tasks", TaskListResponseSchema).then((r) => r.tasks),
    getTask: (id: string): Promise<Task> => request("GET", taskPath(id), TaskResponseSchema).then(unwrapTask),
    createTask: (body: CreateTaskRequest): Promise<Task> =>
      request("POST", "/api/tasks", TaskResponseSchema, body).then(unwrapTask),
    getMessages: (id: string): Promise<MessageDto[]> =>
      request("GET", taskPath(id, "/messages"), MessageListResponseSchema).then((r) => r.messages),
    sendMessage: (id: string, message: string): Promise<Task> =>
      request("POST", taskPath(id, "/messages"), TaskResponseSchema, { message }).then(unwrapTask),
    stopTask: (id: string): Promise<Task> =>
      request("POST", taskPath(id, "/stop"), TaskResponseSchema).then(unwrapTask),
    archiveTask: (id: string): Promise<Task> =>
      request("POST", taskPath(id, "/archive"), TaskResponseSchema).then(unwrapTask),
    deleteTask: (id: string): Promise<void> => request("DELETE", taskPath(id), null),
    getDiff: (id: string): Promise<DiffResponse> => request("GET", taskPath(id, "/diff"), DiffResponseSchema),
    listBranches: (repoUrl: string): Promise<BranchesResponse> =>
      request("GET", `/api/repositories/branches?repoUrl=${encodeURIComponent(repoUrl)}`, BranchesResponseSchema),
    getFiles: (id: string, path: string): Promise<TaskFilesResponse> =>
      request("GET", taskPath(id, `/files?path=${encodeURIComponent(path)}`), TaskFilesResponseSchema),
    openPullRequest: (id: string): Promise<Task> =>
      request("POST", taskPath(id, "/pull-request"), TaskResponseSchema).then(unwrapTask),
    /** The branch as an mbox of patches (GET /patch), as text. */
    getPatch: async (id: string): Promise<string> => {
      const response = await doFetch(`${baseUrl}${taskPath(id, "/patch")}`, { headers: headersFor(undefined) });
      if (!response.ok) {
        if (response.status === 401) options.onUnauthorized?.();
        throw new ApiError(
          response.status,
          response.status === 404 ? "NOT_FOUND" : "INTERNAL",
          `the patch is not available (HTTP ${response.status})`,
        );
      }
      return response.text();
    },
  };
}

export type ApiClient = ReturnType<typeof createApiClient>;

/**
 * Maps a 400 VALIDATION_ERROR onto form fields. The server's message names
 * the offending field (zod paths such as "repoUrl: …"); a structured
 * `issues`/`details` list is used when the server sends one.
 */
export function fieldErrorsFrom<F extends string>(
  error: ApiError,
  fields: readonly F[],
): { fields: Partial<Record<F, string>>; general: string | null } {
  const result: Partial<Record<F, string>> = {};
  if (error.code !== "VALIDATION_ERROR") return { fields: result, general: error.message };

  const inner = (error.body as { error?: { issues?: unknown; details?: unknown } } | null)?.error;
  const list = Array.isArray(inner?.issues) ? inner.issues : Array.isArray(inner?.details) ? inner.details : [];
  for (const issue of list as { path?: unknown; message?: unknown }[]) {
    const head = Array.isArray(issue?.path) ? issue.path[0] : issue?.path;
    if (typeof head === "string" && (fields as readonly string[]).includes(head) && typeof issue.message === "string") {
      result[head as F] ??= issue.message;
    }
  }
  if (Object.keys(result).length > 0) return { fields: result, general: null };

  const named = fields.filter((field) => new RegExp(`\\b${field}\\b`).test(error.message));
  if (named.length > 0) {
    for (const field of named) result[field] = error.message;
    return { fields: result, general: null };
  }
  return { fields: result, general: error.message };
}
