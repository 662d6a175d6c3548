import type { DeliveryConfigDto, DeliveryDto } from "@repo/types";
import type { LlmConfig } from "../config";
import type { WorkspaceManager } from "../execution/types";
import type { Logger } from "../logger";
import { RemoteBranches } from "../repository/remote-branch";
import type { RepositoryStore } from "../repository/repository-store";
import type { MessageLog } from "../services/message-log";
import type { TaskRepository } from "../services/task-repository";
import type { Clock } from "../utils/clock";
import { type DeliveryConfig, secretScrubber } from "./delivery-config";
import { DeliveryRetries } from "./delivery-retries";
import { DeliveryService } from "./delivery-service";
import type { DeliveryStore } from "./delivery-store";
import { Forges } from "./forges";
import type { GitCredentials } from "./git-credentials";
import { modelSummarizer } from "./pull-request-text";
import { ReviewLoop, type ReviewLoopDeps } from "./review-loop";

/** How long webhook delivery ids are kept to recognise redeliveries, ms. */
const WEBHOOK_MEMORY_MS = 30 * 24 * 60 * 60_000;

export interface DeliveryDeps {
  config: DeliveryConfig;
  credentials: GitCredentials;
  llm?: LlmConfig;
  deliveries: DeliveryStore;
  clock: Clock;
  store: RepositoryStore;
  tasks: TaskRepository;
  workspaces: WorkspaceManager;
  messages: Pick<MessageLog, "list">;
  emit(taskId: string, delivery: DeliveryDto): void;
  log: Logger;
}

export function createDelivery(deps: DeliveryDeps) {
  const { config, clock, log, deliveries } = deps;
  const forges = new Forges(config, log);
  const remotes = new RemoteBranches(deps.store);
  let retries: DeliveryRetries | null = null;
  const service = new DeliveryService({
    config,
    repositories: deps.store,
    remotes,
    credentials: deps.credentials,
    forges,
    deliveries,
    tasks: deps.tasks,
    workspaces: deps.workspaces,
    messages: deps.messages,
    summarize: deps.llm ? modelSummarizer(deps.llm) : undefined,
    clock,
    scrub: secretScrubber(config),
    emit: deps.emit,
    retryAt: (at) => retries?.schedule(at),
    log,
  });
  retries = new DeliveryRetries({
    deliveries,
    clock,
    retry: (taskId) => service.deliver(taskId, "retry"),
    log,
  });
  let review: ReviewLoop | null = null;
  const configDto: DeliveryConfigDto = {
    mode: config.defaultMode,
    forges: forges.list().map((forge) => ({ kind: forge.kind, url: forge.settings.url })),
  };

  return {
    service,
    remotes,
    forges,
    configDto,
    /** The review loop the webhook routes feed. */
    reviewLoop(rest: Pick<ReviewLoopDeps, "lifecycle" | "changes">): ReviewLoop {
      review = new ReviewLoop({ ...rest, delivery: service, forges, tasks: deps.tasks, clock, log });
      return review;
    },
    async start(): Promise<void> {
      await deliveries.pruneWebhooks(new Date(clock.now().getTime() - WEBHOOK_MEMORY_MS));
      await retries?.start();
    },
    /** Stops retries and webhook work; call before the lifecycle shuts down. */
    async stopIntake(): Promise<void> {
      await review?.close();
      await retries?.stop();
    },
    /** Waits for the webhook work and the pushes in flight. */
    async drain(): Promise<void> {
      await review?.settle();
      await service.drain();
    },
  };
}

export type Delivery = ReturnType<typeof createDelivery>;
