/**
 * Delivering a task's work to its repository (SPEC §5 `delivery`): the task
 * branch is pushed after every turn that changed it and on archive, a draft
 * pull/merge request is opened after the first such push (mode
 * `pull-request`) and its description refreshed after later ones, and
 * commits someone else pushed to the branch are merged in before the next
 * turn runs.
 *
 * Invariants:
 * - Everything runs from the server's repository store with server-side
 *   credentials (git-credentials.ts); nothing of it reaches a sandbox.
 * - Pushes are fast-forward only. A remote branch that moved is never
 *   overwritten: its commits are fetched and merged into the workspace before
 *   the next turn (`prepareTurn`); a merge that conflicts is reported on the
 *   task (state `conflict`, the files in `error`) and nothing is merged.
 * - A failed push loses nothing (the work stays in the store), is shown on
 *   the task with its reason and is retried with backoff (delivery-retries.ts).
 * - One pull request per task, however many turns: an existing one for the
 *   branch is found before one is opened.
 * - Work on one task is serialized in this process; every change of the
 *   delivery row is emitted (`task-delivery-update`) after it is written.
 * - Errors shown or logged are scrubbed of every configured secret.
 */
import type { TaskDeliveryRow, TaskRow } from "@repo/db";
import { type DeliveryDto, type DeliveryMode, TaskStatus } from "@repo/types";
import { DeliveryFailedError, errorMessage, ValidationError } from "../errors";
import type { WorkspaceManager } from "../execution/types";
import type { Logger } from "../logger";
import { PushRejectedError, type RemoteBranches } from "../repository/remote-branch";
import type { RepositoryStore } from "../repository/repository-store";
import type { MessageLog } from "../services/message-log";
import type { TaskRepository } from "../services/task-repository";
import type { Clock } from "../utils/clock";
import { KeyedMutex } from "../utils/keyed-mutex";
import type { TaskChange } from "../utils/task-status";
import type { DeliveryConfig } from "./delivery-config";
import type { DeliveryPatch, DeliveryStore } from "./delivery-store";
import type { ForgeMatch, Forges } from "./forges";
import { ForgeError, type PullRequestInfo } from "./forges/types";
import type { GitCredentials } from "./git-credentials";
import { pullRequestBody, pullRequestTitle, type Summarizer } from "./pull-request-text";

export interface DeliveryServiceDeps {
  config: Pick<DeliveryConfig, "defaultMode">;
  repositories: RepositoryStore;
  remotes: RemoteBranches;
  credentials: GitCredentials;
  forges: Forges;
  deliveries: DeliveryStore;
  tasks: TaskRepository;
  workspaces: WorkspaceManager;
  messages: Pick<MessageLog, "list">;
  /** Writes the summary that leads a pull request's description (a model is configured). */
  summarize?: Summarizer;
  clock: Clock;
  /** Replaces configured secrets in text that is shown or logged. */
  scrub(text: string): string;
  /** Hears every change of a task's delivery, after it is written. */
  emit(taskId: string, delivery: DeliveryDto): void;
  /** A failed push or forge call is due again at `at`. */
  retryAt(at: Date): void;
  log: Logger;
  /** Delay before the first retry, ms; it doubles with each failure in a row. Default 30000. */
  retryDelayMs?: number;
  /** Longest delay between retries, ms. Default 1800000 (30 minutes). */
  maxRetryDelayMs?: number;
}

/** Where a task came from, when not from the API: its pull request closes that issue. */
export interface TaskOrigin {
  issue: number;
}

type DeliverReason = "turn" | "archive" | "retry";

/** The task, and its delivery with it, was deleted while the delivery was under way. */
class DeliveryGoneError extends Error {
  constructor(taskId: string) {
    super(`task ${taskId} has no delivery`);
    this.name = "DeliveryGoneError";
  }
}

export class DeliveryService {
  private readonly lock = new KeyedMutex();
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly deps: DeliveryServiceDeps) {}

  /** Records how a new task delivers (`mode`, or the server default) before its first turn. */
  async register(task: TaskRow, mode: DeliveryMode | undefined, origin?: TaskOrigin): Promise<void> {
    const chosen = mode ?? this.deps.config.defaultMode;
    const match = this.deps.forges.match(task.repoUrl);
    const row = await this.deps.deliveries.create({
      taskId: task.id,
      mode: chosen,
      remoteBranch: chosen === "none" ? null : task.branch,
      forge: match?.forge.kind ?? null,
      forgeProject: match?.project.toLowerCase() ?? null,
      closesIssue: origin?.issue ?? null,
    });
    this.deps.emit(task.id, toDeliveryDto(row));
  }

  /**
   * The change feed's listener: a turn that ended (its work saved) or an
   * archive is delivered in the background.
   */
  readonly onTaskChange = (change: TaskChange): void => {
    const { task, previous } = change;
    // A change relayed from another server process has no previous row; that process delivers it.
    if (!previous) return;
    const turnEnded = previous.status === TaskStatus.RUNNING && task.status !== TaskStatus.RUNNING;
    const archived = task.status === TaskStatus.ARCHIVED && previous.status !== TaskStatus.ARCHIVED;
    if (turnEnded || archived) this.background(task.id, this.deliver(task.id, archived ? "archive" : "turn"));
  };

  /** Pushes the task branch if it has work the remote lacks, then opens or refreshes its pull request. */
  deliver(taskId: string, reason: DeliverReason): Promise<void> {
    return this.lock.run(taskId, async () => {
      const row = await this.deps.deliveries.find(taskId);
      const task = await this.deps.tasks.find(taskId);
      if (!row || !task?.branch || row.mode === "none") return;
      // A merged pull request's branch, and a closed one's on archive, stay as the reviewers left them.
      if (row.prState === "merged" || (reason === "archive" && row.prState === "closed")) return;
      if (!(await this.deps.repositories.hasBranch(task.repoUrl, task.branch))) return;
      const head = await this.deps.repositories.branchHead(task.repoUrl, task.branch);
      let current = row;
      let pushed = false;
      if (head !== row.pushedSha) {
        if (row.pushedSha === null && head === task.baseCommitSha) return; // no work yet
        current = await this.push(task, row, head);
        if (current.state !== "pushed") return;
        pushed = true;
      }
      if (current.mode === "pull-request") {
        await this.syncPullRequest(task, current, { refresh: pushed || reason === "retry" }).catch(() => undefined);
      }
    });
  }

  /**
   * Before a turn: fetches the task's remote branch and brings commits
   * someone else pushed there into the workspace (a fast-forward, or a merge
   * commit made in the store). A conflict is recorded and nothing merged.
   * Never throws: the turn runs either way.
   */
  prepareTurn(task: TaskRow): Promise<void> {
    return this.lock
      .run(task.id, async () => {
        const row = await this.deps.deliveries.find(task.id);
        if (!row || row.mode === "none" || !task.branch) return;
        if (row.pushedSha === null && row.state === "pending" && row.error === null) return; // never reached the remote
        const remote = await this.fetchRemote(task).catch((error) => {
          this.log(task.id).warn({ reason: this.reason(error) }, "delivery.fetch.failed");
          return null;
        });
        if (remote) await this.takeIn(task, row, remote);
      })
      .catch((error) => this.log(task.id).error({ reason: this.reason(error) }, "delivery.prepare.failed"));
  }

  /** Opens the task's pull request now (pushing first if needed); the API's "Create pull request". */
  async openPullRequest(taskId: string): Promise<void> {
    const task = await this.deps.tasks.get(taskId);
    const match = this.deps.forges.match(task.repoUrl);
    if (!match) {
      throw new ValidationError(
        `${task.repoUrl} is not on a configured forge (set GITHUB_URL and GITHUB_TOKEN, or GITLAB_URL and GITLAB_TOKEN)`,
      );
    }
    await this.lock.run(taskId, async () => {
      const forgeFields = { forge: match.forge.kind, forgeProject: match.project.toLowerCase() };
      let row =
        (await this.deps.deliveries.find(taskId)) ??
        (await this.deps.deliveries.create({
          taskId,
          mode: "pull-request",
          remoteBranch: task.branch,
          ...forgeFields,
        }));
      if (row.prNumber !== null) return;
      if (row.mode !== "pull-request") {
        row = await this.write(taskId, { mode: "pull-request", remoteBranch: task.branch, ...forgeFields });
      }
      const hasWork =
        task.branch &&
        (await this.deps.repositories.hasBranch(task.repoUrl, task.branch)) &&
        (await this.deps.repositories.branchHead(task.repoUrl, task.branch)) !== task.baseCommitSha;
      if (!hasWork) throw new ValidationError("the task has no changes to propose yet");
      const head = await this.deps.repositories.branchHead(task.repoUrl, task.branch!);
      if (head !== row.pushedSha) {
        row = await this.push(task, row, head);
        if (row.state !== "pushed") throw new DeliveryFailedError(row.error ?? "the branch could not be pushed");
      }
      await this.syncPullRequest(task, row, { refresh: false }, match);
    });
  }

  /**
   * A pull request changed on the forge (webhook): records its state. A pull
   * request Umbra did not open is adopted when its head is a task branch of
   * the same repository. The task's row as it is now, or null when the pull
   * request belongs to no task.
   */
  async pullRequestChanged(
    forge: string,
    project: string,
    info: Pick<PullRequestInfo, "number" | "state" | "draft"> & { url?: string },
    headBranch?: string,
  ): Promise<TaskDeliveryRow | null> {
    let row = await this.deps.deliveries.findByPullRequest(forge, project, info.number);
    if (!row && headBranch) row = await this.adoptable(forge, project, headBranch);
    if (!row) return null;
    const taskId = row.taskId;
    return this.lock.run(taskId, () =>
      this.write(taskId, {
        prNumber: info.number,
        prUrl: info.url ?? row.prUrl,
        prState: info.state,
        prDraft: info.draft,
      }),
    );
  }

  /** The task's delivery row by pull request, for the review loop. */
  findByPullRequest(forge: string, project: string, number: number): Promise<TaskDeliveryRow | null> {
    return this.deps.deliveries.findByPullRequest(forge, project, number);
  }

  /** Waits for the deliveries started in the background (shutdown). */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private background(taskId: string, work: Promise<void>): void {
    const tracked = work
      .catch((error) => {
        // A task deleted during its push: nothing is left to record the result on.
        if (error instanceof DeliveryGoneError) this.log(taskId).info("delivery.task-deleted");
        else this.log(taskId).error({ reason: this.reason(error) }, "delivery.failed");
      })
      .finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  /** One push of `head`; the row as it is afterwards (pushed, failed with a retry due, pending or conflict). */
  private async push(task: TaskRow, row: TaskDeliveryRow, head: string): Promise<TaskDeliveryRow> {
    const { credentials, remotes } = this.deps;
    const log = this.log(task.id);
    const branch = task.branch!;
    try {
      const sha = await credentials.withCredentials(task.repoUrl, (auth) => remotes.push(task.repoUrl, branch, auth));
      log.info({ sha }, "delivery.push.ok");
      return this.write(task.id, { state: "pushed", pushedSha: sha, error: null, attempts: 0, nextAttemptAt: null });
    } catch (error) {
      if (error instanceof PushRejectedError) return this.pushRejected(task, head);
      return this.failed(task.id, row, `pushing ${branch} failed: ${this.reason(error)}`, "delivery.push.failed");
    }
  }

  /** The remote branch has commits the task branch lacks: say whether they merge cleanly before the next turn. */
  private async pushRejected(task: TaskRow, head: string): Promise<TaskDeliveryRow> {
    const branch = task.branch!;
    this.log(task.id).warn("delivery.push.rejected");
    const remote = await this.fetchRemote(task).catch(() => null);
    const merge = remote ? await this.deps.remotes.merge(task.repoUrl, head, remote, "probe").catch(() => null) : null;
    if (merge?.kind === "conflict") {
      return this.write(task.id, {
        state: "conflict",
        error: conflictMessage(branch, merge.files),
        attempts: 0,
        nextAttemptAt: null,
      });
    }
    return this.write(task.id, {
      state: "pending",
      error: `${branch} on the repository has commits the task branch does not have; they are merged in before the next turn, then the branch is pushed`,
      attempts: 0,
      nextAttemptAt: null,
    });
  }

  /** Records a failure with its reason and when it is retried. */
  private async failed(
    taskId: string,
    row: TaskDeliveryRow,
    message: string,
    event: string,
    patch: DeliveryPatch = { state: "failed" },
  ): Promise<TaskDeliveryRow> {
    const attempts = row.attempts + 1;
    const delay = Math.min(
      this.deps.maxRetryDelayMs ?? 30 * 60_000,
      (this.deps.retryDelayMs ?? 30_000) * 2 ** Math.min(attempts - 1, 20),
    );
    const nextAttemptAt = new Date(this.deps.clock.now().getTime() + delay);
    const error = this.deps.scrub(message);
    this.log(taskId).warn({ error, attempts, retryInMs: delay }, event);
    const written = await this.write(taskId, { ...patch, error, attempts, nextAttemptAt });
    this.deps.retryAt(nextAttemptAt);
    return written;
  }

  private fetchRemote(task: TaskRow): Promise<string | null> {
    const { credentials, remotes } = this.deps;
    return credentials.withCredentials(task.repoUrl, (auth) => remotes.fetch(task.repoUrl, task.branch!, auth));
  }

  /** Brings the remote branch's commit `remote` into the task branch and its workspace. */
  private async takeIn(task: TaskRow, row: TaskDeliveryRow, remote: string): Promise<void> {
    const { repositories, remotes, workspaces } = this.deps;
    const branch = task.branch!;
    const log = this.log(task.id);
    const head = await repositories.branchHead(task.repoUrl, branch);
    const merge = await remotes.merge(
      task.repoUrl,
      head,
      remote,
      `Merge the commits pushed to ${branch} into the task branch`,
    );
    if (merge.kind === "up-to-date") {
      if (row.state === "conflict" || row.state === "pending") {
        await this.write(task.id, { state: head === row.pushedSha ? "pushed" : "pending", error: null });
      }
      return;
    }
    if (merge.kind === "conflict") {
      log.warn({ files: merge.files }, "delivery.merge.conflict");
      await this.write(task.id, { state: "conflict", error: conflictMessage(branch, merge.files) });
      return;
    }
    if (!workspaces.fastForward) {
      await this.write(task.id, { error: "this workspace cannot take in commits pushed to the remote branch" });
      return;
    }
    try {
      await workspaces.fastForward(task, merge.sha);
    } catch (error) {
      log.warn({ reason: this.reason(error) }, "delivery.merge.workspace_failed");
      await this.write(task.id, {
        error: `the commits pushed to ${branch} could not be brought into the workspace: ${this.reason(error)}`,
      });
      return;
    }
    log.info({ kind: merge.kind, sha: merge.sha, remote }, "delivery.remote.merged");
    await this.write(task.id, {
      state: merge.sha === remote ? "pushed" : "pending",
      pushedSha: remote,
      error: null,
      attempts: 0,
      nextAttemptAt: null,
    });
  }

  /** Opens the task's pull request if it has none, or refreshes the description of its open one. */
  private async syncPullRequest(
    task: TaskRow,
    row: TaskDeliveryRow,
    { refresh }: { refresh: boolean },
    match = this.deps.forges.match(task.repoUrl),
  ): Promise<void> {
    if (!match || (row.prNumber !== null && (!refresh || row.prState !== "open"))) return;
    const log = this.log(task.id);
    try {
      const body = await this.body(task, row);
      let info: PullRequestInfo;
      if (row.prNumber === null) {
        info =
          (await match.forge.findPullRequest(match.project, task.branch!)) ??
          (await match.forge.openPullRequest({
            project: match.project,
            head: task.branch!,
            base: task.baseBranch!,
            title: pullRequestTitle(task),
            body,
          }));
        log.info({ number: info.number, url: info.url }, "delivery.pull_request.opened");
      } else {
        info = await match.forge.updatePullRequest(match.project, row.prNumber, body);
        log.info({ number: info.number }, "delivery.pull_request.refreshed");
      }
      await this.write(task.id, {
        ...pullRequestFields(match, info),
        error: null,
        attempts: 0,
        nextAttemptAt: null,
      });
    } catch (error) {
      const what = row.prNumber === null ? "opening the pull request" : "updating the pull request";
      await this.failed(task.id, row, `${what} failed: ${this.reason(error)}`, "delivery.pull_request.failed", {});
      if (error instanceof ForgeError)
        throw new DeliveryFailedError(this.deps.scrub(`${what} failed: ${error.message}`));
      throw error;
    }
  }

  private async body(task: TaskRow, row: TaskDeliveryRow): Promise<string> {
    const { repositories, messages, summarize } = this.deps;
    const files =
      task.baseCommitSha && task.branch
        ? (await repositories.diff(task.repoUrl, task.baseCommitSha, task.branch)).files
        : [];
    return pullRequestBody(
      { task, messages: await messages.list(task.id), files, closesIssue: row.closesIssue },
      summarize,
    );
  }

  /** The delivery row of a task branch `umbra/<id>` of the same repository, for a pull request Umbra did not open. */
  private async adoptable(forge: string, project: string, headBranch: string): Promise<TaskDeliveryRow | null> {
    const id = /^umbra\/([0-9a-f-]{36})$/i.exec(headBranch)?.[1];
    const task = id ? await this.deps.tasks.find(id) : null;
    if (!task || task.branch !== headBranch) return null;
    const match = this.deps.forges.match(task.repoUrl);
    if (match?.forge.kind !== forge || match.project.toLowerCase() !== project.toLowerCase()) return null;
    return this.deps.deliveries.find(task.id);
  }

  private async write(taskId: string, patch: DeliveryPatch): Promise<TaskDeliveryRow> {
    const row = await this.deps.deliveries.update(taskId, patch);
    if (!row) throw new DeliveryGoneError(taskId);
    this.deps.emit(taskId, toDeliveryDto(row));
    return row;
  }

  private reason(error: unknown): string {
    return this.deps.scrub(errorMessage(error));
  }

  private log(taskId: string): Logger {
    return this.deps.log.child({ taskId });
  }
}

function pullRequestFields(match: ForgeMatch, info: PullRequestInfo): DeliveryPatch {
  return {
    forge: match.forge.kind,
    forgeProject: match.project.toLowerCase(),
    prNumber: info.number,
    prUrl: info.url,
    prState: info.state,
    prDraft: info.draft,
  };
}

function conflictMessage(branch: string, files: readonly string[]): string {
  const listed = files.length > 0 ? files.join(", ") : "(git named no files)";
  return `commits pushed to ${branch} conflict with the task branch in: ${listed}; nothing was merged or pushed`;
}

/** The API's view of a delivery row; a task without one delivers nothing. */
export function toDeliveryDto(row: TaskDeliveryRow | null | undefined): DeliveryDto {
  if (!row) {
    return {
      mode: "none",
      state: "pending",
      remoteBranch: null,
      pushedSha: null,
      error: null,
      nextRetryAt: null,
      pullRequest: null,
    };
  }
  return {
    mode: row.mode,
    state: row.state,
    remoteBranch: row.remoteBranch,
    pushedSha: row.pushedSha,
    error: row.error,
    // A retry is scheduled only after a failure; without an error the column holds nothing a user waits for.
    nextRetryAt: row.error !== null && row.nextAttemptAt ? row.nextAttemptAt.toISOString() : null,
    pullRequest:
      row.prNumber !== null && row.prUrl !== null && row.prState !== null
        ? { url: row.prUrl, number: row.prNumber, state: row.prState, draft: row.prDraft ?? false }
        : null,
  };
}
