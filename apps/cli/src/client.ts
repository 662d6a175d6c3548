/**
 * The CLI's HTTP client for the Umbra API (SPEC §5). Answers are parsed with
 * the shared schemas of @repo/types, widened where the contract has fields a
 * server may not send yet (agent, model, usage, delivery); errors carry the
 * server's `{error: {code, message}}`. The token is sent as a bearer header
 * and never printed.
 */
import {
  TaskSchema as BaseTaskSchema,
  DiffResponseSchema,
  ErrorBodySchema,
  MessageListResponseSchema,
} from "@repo/types";
import { z } from "zod";

export const TaskSchema = BaseTaskSchema.extend({
  agent: z.string().nullable().optional(),
  model: z.string().nullable().optional(),
  usage: z
    .object({ inputTokens: z.number(), outputTokens: z.number(), costUsd: z.number().nullable().optional() })
    .nullable()
    .optional(),
  delivery: z
    .object({
      mode: z.string(),
      state: z.string(),
      remoteBranch: z.string().nullable().optional(),
      pushedSha: z.string().nullable().optional(),
      pullRequest: z.object({ url: z.string(), number: z.number() }).loose().nullable().optional(),
    })
    .loose()
    .nullable()
    .optional(),
});
export type Task = z.infer<typeof TaskSchema>;

const TaskResponse = z.object({ task: TaskSchema });

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export interface ClientOptions {
  baseUrl: string;
  token?: string;
}

export function createClient({ baseUrl, token }: ClientOptions) {
  const root = baseUrl.replace(/\/+$/, "");
  const headers = (body: boolean): Record<string, string> => ({
    accept: "application/json",
    ...(token ? { authorization: `Bearer ${token}` } : {}),
    ...(body ? { "content-type": "application/json" } : {}),
  });

  async function send(method: string, path: string, body?: unknown): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(`${root}${path}`, {
        method,
        headers: headers(body !== undefined),
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
      throw new ApiError(
        0,
        "NETWORK",
        `cannot reach the Umbra server at ${root} (${cause}); is it running? (UMBRA_URL)`,
      );
    }
    if (!response.ok) {
      const text = await response.text();
      let parsed: z.infer<typeof ErrorBodySchema> | null = null;
      try {
        const result = ErrorBodySchema.safeParse(JSON.parse(text));
        parsed = result.success ? result.data : null;
      } catch {
        parsed = null;
      }
      const code = parsed?.error.code ?? (response.status === 404 ? "NOT_FOUND" : "HTTP");
      const message =
        response.status === 401
          ? "the server wants an API token: set UMBRA_TOKEN"
          : (parsed?.error.message ?? `${method} ${path} failed with HTTP ${response.status}`);
      throw new ApiError(response.status, code, message);
    }
    return response;
  }

  async function json<T>(method: string, path: string, schema: z.ZodType<T>, body?: unknown): Promise<T> {
    const response = await send(method, path, body);
    const parsed = schema.safeParse(await response.json());
    if (!parsed.success) {
      throw new ApiError(
        response.status,
        "BAD_RESPONSE",
        `unexpected answer from ${method} ${path}: ${parsed.error.message}`,
      );
    }
    return parsed.data;
  }

  const task = (id: string, suffix = "") => `/api/tasks/${encodeURIComponent(id)}${suffix}`;
  return {
    baseUrl: root,
    token,
    listTasks: () => json("GET", "/api/tasks", z.object({ tasks: z.array(TaskSchema) })).then((r) => r.tasks),
    getTask: (id: string) => json("GET", task(id), TaskResponse).then((r) => r.task),
    createTask: (body: Record<string, unknown>) => json("POST", "/api/tasks", TaskResponse, body).then((r) => r.task),
    followUp: (id: string, message: string) =>
      json("POST", task(id, "/messages"), TaskResponse, { message }).then((r) => r.task),
    stop: (id: string) => json("POST", task(id, "/stop"), TaskResponse).then((r) => r.task),
    messages: (id: string) => json("GET", task(id, "/messages"), MessageListResponseSchema).then((r) => r.messages),
    diff: (id: string) => json("GET", task(id, "/diff"), DiffResponseSchema),
    /** The branch as an mbox of patches, or null when the server has no patch route. */
    patch: async (id: string): Promise<string | null> => {
      try {
        return await (await send("GET", task(id, "/patch"))).text();
      } catch (error) {
        if (error instanceof ApiError && error.status === 404 && /route/i.test(error.message)) return null;
        throw error;
      }
    },
  };
}

export type Client = ReturnType<typeof createClient>;

/** Finds a task by its id or a unique prefix of it. */
export async function resolveTask(client: Client, idOrPrefix: string): Promise<Task> {
  if (/^[0-9a-f-]{36}$/i.test(idOrPrefix)) return client.getTask(idOrPrefix);
  const matches = (await client.listTasks()).filter((t) => t.id.startsWith(idOrPrefix.toLowerCase()));
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) throw new ApiError(404, "NOT_FOUND", `no task id starts with ${idOrPrefix}`);
  throw new ApiError(400, "AMBIGUOUS", `${matches.length} tasks start with ${idOrPrefix}; give more of the id`);
}
