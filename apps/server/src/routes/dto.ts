/**
 * Database rows → the API's JSON shapes (SPEC §5). Fields that can quote a
 * repository URL are scrubbed of embedded credentials (security/credentials.ts).
 */
import type { MessageRow, TaskRow } from "@repo/db";
import type { MessageDto, TaskDto } from "@repo/types";
import { scrubCredentials } from "../security/credentials";

export function toTaskDto(task: TaskRow): TaskDto {
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
