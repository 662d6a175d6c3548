/**
 * The review loop: what a forge's webhook events do to tasks.
 *
 * - A comment on a task's open pull request that mentions Umbra, by someone
 *   who may change the repository, becomes a follow-up through the normal
 *   lifecycle (a warm workspace starts at once; a cleaned-up one
 *   re-initializes). While the task is busy the follow-up waits for its turn
 *   to end; follow-ups of one task keep their order.
 * - A pull request merged or closed archives its task (the workspace is
 *   cleaned up; the branch is left as the reviewers left it).
 * - An issue that asks for Umbra (a mentioning comment, or its label)
 *   becomes a new task on that repository whose pull request closes it.
 *
 * Work runs in the background of the webhook request; `close()` stops
 * waiting follow-ups and waits for the rest.
 */
import { CreateTaskBodySchema, isBusy, TaskStatus } from "@repo/types";
import { InvalidTransitionError, TaskBusyError } from "../errors";
import type { Logger } from "../logger";
import type { TaskLifecycle } from "../services/task-lifecycle";
import type { TaskRepository } from "../services/task-repository";
import type { Clock } from "../utils/clock";
import { KeyedMutex } from "../utils/keyed-mutex";
import type { TaskChanges } from "../utils/task-changes";
import type { DeliveryService } from "./delivery-service";
import type { Forges } from "./forges";
import type { ForgeEvent } from "./webhook-events";

/** How often a waiting follow-up looks again at a busy task whose turn may run in another process, ms. */
const BUSY_RECHECK_MS = 5_000;

export interface ReviewLoopDeps {
  delivery: DeliveryService;
  forges: Forges;
  lifecycle: Pick<TaskLifecycle, "create" | "followUp" | "archive">;
  tasks: TaskRepository;
  changes: TaskChanges;
  clock: Clock;
  log: Logger;
}

export class ReviewLoop {
  private readonly followUps = new KeyedMutex();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly waiters = new Set<() => void>();
  private closed = false;

  constructor(private readonly deps: ReviewLoopDeps) {}

  /** Acts on `event` in the background; failures are logged, never thrown. */
  dispatch(event: ForgeEvent, deliveryId: string): void {
    const log = this.deps.log.child({ forge: event.forge, deliveryId });
    const work = this.act(event, log)
      .catch((error) => log.error({ reason: (error as Error).message }, "webhook.action.failed"))
      .finally(() => this.inFlight.delete(work));
    this.inFlight.add(work);
  }

  /** Stops waiting follow-ups and waits for the work in flight. */
  async close(): Promise<void> {
    this.closed = true;
    for (const wake of [...this.waiters]) wake();
    await this.settle();
  }

  /** Waits until no webhook work is in flight. */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private async act(event: ForgeEvent, log: Logger): Promise<void> {
    switch (event.kind) {
      case "comment":
        return this.comment(event, log);
      case "pull-request":
        return this.pullRequest(event, log);
      case "issue":
        return this.issue(event, log);
    }
  }

  private async comment(event: Extract<ForgeEvent, { kind: "comment" }>, log: Logger): Promise<void> {
    const row = await this.deps.delivery.findByPullRequest(event.forge, event.project, event.number);
    if (row?.prState !== "open") {
      log.info({ project: event.project, number: event.number }, "webhook.comment.no_open_task");
      return;
    }
    if (!(await this.mayDirect(event, log))) return;
    // Where the comment came from, on a line of its own that a shell agent reads as a comment too.
    const where = event.location ? ` on ${event.location}` : "";
    const message = `${event.message}\n\n# From a review comment by @${event.actor.login}${where} on the pull request.`;
    log.info({ taskId: row.taskId, number: event.number }, "webhook.comment.follow_up");
    await this.followUpWhenIdle(row.taskId, message, log);
  }

  private async pullRequest(event: Extract<ForgeEvent, { kind: "pull-request" }>, log: Logger): Promise<void> {
    const row = await this.deps.delivery.pullRequestChanged(
      event.forge,
      event.project,
      { number: event.number, state: event.state, draft: event.draft, url: event.url },
      event.headBranch,
    );
    if (!row || event.state === "open") return;
    const task = await this.deps.tasks.find(row.taskId);
    if (!task || task.status === TaskStatus.ARCHIVED) return;
    log.info({ taskId: task.id, state: event.state }, "webhook.pull_request.archive");
    await this.deps.lifecycle.archive(task.id).catch((error) => {
      if (!(error instanceof InvalidTransitionError)) throw error; // archived meanwhile
    });
  }

  private async issue(event: Extract<ForgeEvent, { kind: "issue" }>, log: Logger): Promise<void> {
    if (!event.vouched && !(await this.mayDirect(event, log))) return;
    // The repository must be the forge's own project: a payload naming another host (a private address, a
    // local path) would make the server fetch it, which the repository URL policy refuses for users too.
    const match = this.deps.forges.match(event.repoUrl);
    if (match?.forge.kind !== event.forge) {
      log.warn({ number: event.number, project: event.project }, "webhook.issue.repository_not_on_forge");
      return;
    }
    const body = CreateTaskBodySchema.safeParse({
      repoUrl: event.repoUrl,
      title: event.title.trim().slice(0, 200) || undefined,
      message: [event.title, event.body, event.message].filter((part) => part?.trim()).join("\n\n"),
      delivery: "pull-request",
    });
    if (!body.success) {
      log.warn({ number: event.number, issue: body.error.issues[0]?.message }, "webhook.issue.unusable");
      return;
    }
    const task = await this.deps.lifecycle.create(body.data, { issue: event.number });
    log.info({ taskId: task.id, project: event.project, number: event.number }, "webhook.issue.task_created");
  }

  /** Whether the event's author may change the repository (and so direct Umbra). */
  private async mayDirect(event: Extract<ForgeEvent, { actor: unknown }>, log: Logger): Promise<boolean> {
    const forge = this.deps.forges.byKind(event.forge);
    const allowed = forge ? await forge.canDirect(event.project, event.actor) : false;
    if (!allowed) log.info({ actor: event.actor.login, project: event.project }, "webhook.actor.not_allowed");
    return allowed;
  }

  /** Sends the follow-up, waiting while the task is busy; follow-ups of one task keep their order. */
  private followUpWhenIdle(taskId: string, message: string, log: Logger): Promise<void> {
    return this.followUps.run(taskId, async () => {
      while (!this.closed) {
        try {
          await this.deps.lifecycle.followUp(taskId, message);
          return;
        } catch (error) {
          if (!(error instanceof TaskBusyError)) throw error;
          log.info({ taskId }, "webhook.follow_up.waiting");
          await this.untilIdle(taskId);
        }
      }
    });
  }

  /** Resolves when the task is seen at rest (or on a periodic look, for turns run by another process). */
  private untilIdle(taskId: string): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        unsubscribe();
        timer.cancel();
        this.waiters.delete(done);
        resolve();
      };
      const unsubscribe = this.deps.changes.subscribe((change) => {
        if (change.task.id === taskId && !isBusy(change.task)) done();
      });
      const timer = this.deps.clock.setTimer(done, BUSY_RECHECK_MS);
      this.waiters.add(done);
      if (this.closed) done();
      // The turn may have ended between the refusal and the subscription.
      void this.deps.tasks.find(taskId).then((task) => {
        if (!task || !isBusy(task)) done();
      }, done);
    });
  }
}
