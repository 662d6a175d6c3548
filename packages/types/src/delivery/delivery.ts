/**
 * Delivery: where a task's work goes once a turn has saved it (SPEC §5
 * `delivery`). `none` keeps the task branch on the server; `branch` pushes it
 * to the task's repository after every turn that changed it; `pull-request`
 * also opens a draft pull/merge request on the repository's forge.
 */
import { z } from "zod";

export const DELIVERY_MODES = ["none", "branch", "pull-request"] as const;
export type DeliveryMode = (typeof DELIVERY_MODES)[number];

/**
 * `pending`: nothing delivered yet, or the branch has work the remote does not
 * have; `pushed`: the remote branch is at `pushedSha`; `failed`: the last push
 * failed (`error` says why) and is retried; `conflict`: commits pushed by
 * someone else cannot be merged into the task branch (`error` names the files).
 */
export const DELIVERY_STATES = ["pending", "pushed", "failed", "conflict"] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];

export const PULL_REQUEST_STATES = ["open", "merged", "closed"] as const;
export type PullRequestState = (typeof PULL_REQUEST_STATES)[number];

export const PullRequestSchema = z.object({
  url: z.string(),
  number: z.number().int(),
  state: z.enum(PULL_REQUEST_STATES),
  draft: z.boolean(),
});
export type PullRequestDto = z.infer<typeof PullRequestSchema>;

export const DeliverySchema = z.object({
  mode: z.enum(DELIVERY_MODES),
  state: z.enum(DELIVERY_STATES),
  /** The branch on the task's repository, e.g. `umbra/<task-id>`; null when delivery is off. */
  remoteBranch: z.string().nullable(),
  /** The commit the remote branch was last pushed to. */
  pushedSha: z.string().nullable(),
  error: z.string().nullable(),
  /** When a failed push or forge call is tried again (ISO); null when nothing waits for a retry. */
  nextRetryAt: z.string().nullable(),
  pullRequest: PullRequestSchema.nullable(),
});
export type DeliveryDto = z.infer<typeof DeliverySchema>;

export const DeliveryConfigSchema = z.object({
  /** The server's default (DELIVERY). */
  mode: z.enum(DELIVERY_MODES),
  /** The forges pull/merge requests can be opened on. */
  forges: z.array(z.object({ kind: z.enum(["github", "gitlab"]), url: z.string() })),
});
export type DeliveryConfigDto = z.infer<typeof DeliveryConfigSchema>;

/** Sent to the task's room on every change of its delivery. */
export interface TaskDeliveryUpdateEvent {
  taskId: string;
  delivery: DeliveryDto;
}
