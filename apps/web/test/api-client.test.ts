import { describe, expect, it, vi } from "vitest";
import { taskDto } from "../../../test/support/task-dto";
import { ApiError, createApiClient, fieldErrorsFrom } from "../src/api/client";

const TASK = taskDto({ branch: "umbra/t1", baseCommitSha: "abc", lastOutcome: "COMPLETED" });

function respond(status: number, body: unknown) {
  return vi.fn(
    async (_url: string | URL | Request, _init?: RequestInit) =>
      new Response(body === undefined ? null : JSON.stringify(body), { status }),
  );
}

async function caught(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error("expected the call to fail");
}

describe("API client", () => {
  it("sends the token as a bearer header and parses the answer", async () => {
    const fetch = respond(202, { task: TASK });
    const api = createApiClient({ fetch, getToken: () => "s3cret" });
    const task = await api.sendMessage("t1", "more");
    expect(task.branch).toBe("umbra/t1");
    const [url, init] = fetch.mock.calls[0]!;
    expect(url).toBe("/api/tasks/t1/messages");
    expect(init?.method).toBe("POST");
    const headers = (init?.headers ?? {}) as Record<string, string>;
    expect(headers.authorization).toBe("Bearer s3cret");
    expect(init?.body).toBe(JSON.stringify({ message: "more" }));
  });

  it("surfaces the server's error code and message", async () => {
    const api = createApiClient({
      fetch: respond(409, { error: { code: "TASK_BUSY", message: "task t1 is RUNNING" } }),
    });
    const error = await caught(api.sendMessage("t1", "x"));
    expect([error.status, error.code, error.message]).toEqual([409, "TASK_BUSY", "task t1 is RUNNING"]);
  });

  it("reports a 401 so the app can ask for a token", async () => {
    const onUnauthorized = vi.fn();
    const api = createApiClient({
      fetch: respond(401, { error: { code: "UNAUTHORIZED", message: "missing token" } }),
      onUnauthorized,
    });
    expect((await caught(api.listTasks())).code).toBe("UNAUTHORIZED");
    expect(onUnauthorized).toHaveBeenCalledOnce();
  });

  it("refuses an answer that does not match the contract", async () => {
    const api = createApiClient({ fetch: respond(200, { task: { ...TASK, status: "DONE" } }) });
    expect((await caught(api.getTask("t1"))).code).toBe("BAD_RESPONSE");
  });

  it("accepts 204 without a body", async () => {
    const api = createApiClient({ fetch: respond(204, undefined) });
    await expect(api.deleteTask("t1")).resolves.toBeUndefined();
  });

  it("turns a network failure into an ApiError", async () => {
    const api = createApiClient({
      fetch: vi.fn(async () => {
        throw new TypeError("fetch failed");
      }),
    });
    expect((await caught(api.getConfig())).code).toBe("NETWORK");
  });
});

describe("fieldErrorsFrom", () => {
  const FIELDS = ["repoUrl", "baseBranch", "message"] as const;

  it("puts a validation error next to the field its message names", () => {
    const error = new ApiError(400, "VALIDATION_ERROR", "repoUrl: repository not found");
    expect(fieldErrorsFrom(error, FIELDS)).toEqual({
      fields: { repoUrl: "repoUrl: repository not found" },
      general: null,
    });
  });

  it("uses structured issues when the server sends them", () => {
    const body = {
      error: { code: "VALIDATION_ERROR", message: "invalid", issues: [{ path: ["baseBranch"], message: "bad" }] },
    };
    const error = new ApiError(400, "VALIDATION_ERROR", "invalid", body);
    expect(fieldErrorsFrom(error, FIELDS).fields).toEqual({ baseBranch: "bad" });
  });

  it("keeps other errors general", () => {
    const error = new ApiError(500, "INTERNAL", "boom");
    expect(fieldErrorsFrom(error, FIELDS)).toEqual({ fields: {}, general: "boom" });
  });
});
