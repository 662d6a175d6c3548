/**
 * The delivery routes of SPEC §5: `GET /api/tasks/:id/patch` (the task
 * branch since its base as an mbox, for `git am`) and
 * `POST /api/tasks/:id/pull-request` (open the pull/merge request now).
 */
import type { FastifyInstance } from "fastify";
import type { DeliveryService } from "../delivery/delivery-service";
import type { RemoteBranches } from "../repository/remote-branch";
import type { RepositoryStore } from "../repository/repository-store";
import type { TaskRepository } from "../services/task-repository";
import type { TaskDescriber } from "./dto";
import { taskIdFrom } from "./tasks";

export interface DeliveryRouteDeps {
  tasks: TaskRepository;
  store: RepositoryStore;
  remotes: RemoteBranches;
  delivery: DeliveryService;
  describe: TaskDescriber;
}

export function registerDeliveryRoutes(app: FastifyInstance, deps: DeliveryRouteDeps): void {
  app.get("/api/tasks/:id/patch", async (request, reply) => {
    const task = await deps.tasks.get(taskIdFrom(request.params));
    const hasBranch = task.baseCommitSha && task.branch && (await deps.store.hasBranch(task.repoUrl, task.branch));
    const mbox = hasBranch ? await deps.remotes.formatPatch(task.repoUrl, task.baseCommitSha!, task.branch!) : "";
    return reply
      .type("application/mbox")
      .header("content-disposition", `attachment; filename="umbra-${task.id}.patch"`)
      .send(mbox);
  });

  app.post("/api/tasks/:id/pull-request", async (request) => {
    const id = taskIdFrom(request.params);
    await deps.delivery.openPullRequest(id);
    return { task: await deps.describe.one(await deps.tasks.get(id)) };
  });
}
