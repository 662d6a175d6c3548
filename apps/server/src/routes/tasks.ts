/**
 * The task routes of SPEC §5. Thin: parse the input with the shared zod
 * schemas, call the lifecycle service, shape the answer. Errors are thrown
 * and mapped to the error shape in one place (app.ts).
 *
 * Besides SPEC §5: `GET /api/tasks/:id/log`, the task's full agent output
 * (text/plain), which messages keep only up to their cap.
 */
import { CreateTaskBodySchema, FollowUpBodySchema, TaskIdSchema } from "@repo/types";
import type { FastifyInstance } from "fastify";
import type { z } from "zod";
import { NotFoundError, ValidationError } from "../errors";
import type { RepositoryStore } from "../repository/repository-store";
import type { RepoUrlPolicy } from "../security/repo-url-policy";
import type { MessageLog } from "../services/message-log";
import type { OutputLogs } from "../services/output-log";
import type { TaskLifecycle } from "../services/task-lifecycle";
import type { TaskRepository } from "../services/task-repository";
import { toMessageDto, toTaskDto } from "./dto";

export interface TaskRouteDeps {
  tasks: TaskRepository;
  lifecycle: TaskLifecycle;
  messages: MessageLog;
  store: RepositoryStore;
  /** Which repository URLs may be fetched (SSRF and local-repository guard). */
  repoUrls: RepoUrlPolicy;
  outputs: OutputLogs;
}

export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const parsed = schema.safeParse(body ?? undefined);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join(".");
    const message =
      issue.code === "unrecognized_keys"
        ? `unknown field(s): ${issue.keys.join(", ")}`
        : body === undefined || body === null || typeof body !== "object"
          ? "the request body must be a JSON object"
          : `${field ? `${field}: ` : ""}${issue.message}`;
    throw new ValidationError(message);
  }
  return parsed.data;
}

function taskIdFrom(params: unknown): string {
  const id = (params as { id?: string }).id ?? "";
  // An id that is not a UUID cannot name a task.
  if (!TaskIdSchema.safeParse(id).success) throw new NotFoundError("task", id);
  return id;
}

export function registerTaskRoutes(app: FastifyInstance, deps: TaskRouteDeps): void {
  const { tasks, lifecycle, messages, store, repoUrls, outputs } = deps;
  app.post("/api/tasks", async (request, reply) => {
    const body = parseBody(CreateTaskBodySchema, request.body);
    await repoUrls.check(body.repoUrl);
    const task = await lifecycle.create(body);
    return reply.code(201).send({ task: toTaskDto(task) });
  });

  app.get("/api/tasks", async () => ({ tasks: (await tasks.list()).map(toTaskDto) }));

  app.get("/api/tasks/:id", async (request) => ({ task: toTaskDto(await tasks.get(taskIdFrom(request.params))) }));

  app.get("/api/tasks/:id/messages", async (request) => {
    const task = await tasks.get(taskIdFrom(request.params));
    return { messages: (await messages.list(task.id)).map(toMessageDto) };
  });

  app.post("/api/tasks/:id/messages", async (request, reply) => {
    const id = taskIdFrom(request.params);
    const body = parseBody(FollowUpBodySchema, request.body);
    const task = await lifecycle.followUp(id, body.message);
    return reply.code(202).send({ task: toTaskDto(task) });
  });

  app.post("/api/tasks/:id/stop", async (request) => ({
    task: toTaskDto(await lifecycle.stop(taskIdFrom(request.params))),
  }));

  app.post("/api/tasks/:id/archive", async (request) => ({
    task: toTaskDto(await lifecycle.archive(taskIdFrom(request.params))),
  }));

  app.get("/api/tasks/:id/log", async (request, reply) => {
    const task = await tasks.get(taskIdFrom(request.params));
    const log = await outputs.read(task.id);
    reply.type("text/plain; charset=utf-8");
    return log ? reply.header("content-length", log.size).send(log.stream) : reply.send("");
  });

  app.delete("/api/tasks/:id", async (request, reply) => {
    const id = taskIdFrom(request.params);
    await lifecycle.delete(id);
    await outputs.remove(id);
    return reply.code(204).send();
  });

  app.get("/api/tasks/:id/diff", async (request) => {
    const task = await tasks.get(taskIdFrom(request.params));
    if (!task.baseCommitSha || !task.branch || !(await store.hasBranch(task.repoUrl, task.branch))) {
      return { baseCommitSha: task.baseCommitSha, branch: task.branch, files: [], patch: "" };
    }
    const diff = await store.diff(task.repoUrl, task.baseCommitSha, task.branch);
    return { baseCommitSha: task.baseCommitSha, branch: task.branch, ...diff };
  });
}
