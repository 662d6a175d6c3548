/**
 * Database rows → the API's JSON shapes (SPEC §5). Fields that can quote a
 * repository URL are scrubbed of embedded credentials (security/credentials.ts).
 */
import type { MessageRow, TaskRow } from "@repo/db";
import type { AgentKind, DeliveryDto, MessageDto, TaskDto } from "@repo/types";
import { toDeliveryDto } from "../delivery/delivery-service";
import type { DeliveryStore } from "../delivery/delivery-store";
import { scrubCredentials } from "../security/credentials";

export function toTaskDto(task: TaskRow, delivery: DeliveryDto): TaskDto {
  return {
    id: task.id,
    title: task.title,
    status: task.status,
    initStatus: task.initStatus,
    mode: task.mode,
    repoUrl: scrubCredentials(task.repoUrl),
    baseBranch: task.baseBranch,
    branch: task.branch,
    baseCommitSha: task.baseCommitSha,
    scheduledCleanupAt: task.scheduledCleanupAt?.toISOString() ?? null,
    initializationError: task.initializationError && scrubCredentials(task.initializationError),
    errorMessage: task.errorMessage && scrubCredentials(task.errorMessage),
    lastOutcome: task.lastOutcome,
    createdAt: task.createdAt.toISOString(),
    updatedAt: task.updatedAt.toISOString(),
    agent: task.agent as AgentKind | null,
    model: task.model,
    usage: { inputTokens: task.inputTokens, outputTokens: task.outputTokens, costUsd: task.costUsd },
    delivery,
  };
}

/** The task objects of the API: a task row with its delivery. */
export interface TaskDescriber {
  one(task: TaskRow): Promise<TaskDto>;
  many(tasks: readonly TaskRow[]): Promise<TaskDto[]>;
}

export function taskDescriber(deliveries: Pick<DeliveryStore, "find" | "findMany">): TaskDescriber {
  return {
    async one(task) {
      return toTaskDto(task, toDeliveryDto(await deliveries.find(task.id)));
    },
    async many(tasks) {
      const rows = await deliveries.findMany(tasks.map((task) => task.id));
      return tasks.map((task) => toTaskDto(task, toDeliveryDto(rows.get(task.id))));
    },
  };
}

export function toMessageDto(message: MessageRow): MessageDto {
  return {
    id: message.id,
    role: message.role,
    content: message.content,
    sequence: message.sequence,
    metadata: message.metadata ?? null,
    createdAt: message.createdAt.toISOString(),
  };
}
