/** A complete task as the API sends it, for tests: defaults for every field, the test's own values on top. */
import type { TaskDto } from "@repo/types";

export function taskDto(fields: Partial<TaskDto> = {}): TaskDto {
  return {
    id: "t1",
    title: "demo",
    status: "COMPLETED",
    initStatus: "ACTIVE",
    mode: "local",
    repoUrl: "/repo",
    baseBranch: null,
    branch: null,
    baseCommitSha: null,
    scheduledCleanupAt: null,
    initializationError: null,
    errorMessage: null,
    lastOutcome: null,
    createdAt: "2030-01-01T00:00:00.000Z",
    updatedAt: "2030-01-01T00:00:00.000Z",
    agent: "shell",
    model: null,
    usage: { inputTokens: 0, outputTokens: 0, costUsd: null },
    delivery: {
      mode: "branch",
      state: "pending",
      remoteBranch: null,
      pushedSha: null,
      error: null,
      nextRetryAt: null,
      pullRequest: null,
    },
    ...fields,
  };
}
