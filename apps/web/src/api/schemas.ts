/**
 * How the web app reads the API's answers. It parses with the shared schemas
 * of @repo/types, widened where the contract (SPEC §5) has fields that a
 * server may not send yet — the task's agent, model, usage and delivery, the
 * config's agent list and delivery default — so the UI works with servers
 * that have them and with servers that do not. Agent kinds are plain strings
 * here: a new agent on the server must not break the page.
 */
import {
  TaskSchema as BaseTaskSchema,
  ConfigResponseSchema,
  DiffResponseSchema,
  MessageListResponseSchema,
} from "@repo/types";
import { z } from "zod";

export const UsageSchema = z.object({
  inputTokens: z.number(),
  outputTokens: z.number(),
  costUsd: z.number().nullable().optional(),
});
export type Usage = z.infer<typeof UsageSchema>;

export const DELIVERY_MODES = ["none", "branch", "pull-request"] as const;
export type DeliveryMode = (typeof DELIVERY_MODES)[number];

export const PullRequestSchema = z.object({
  url: z.string(),
  number: z.number(),
  state: z.enum(["open", "merged", "closed"]),
  draft: z.boolean().optional(),
});

export const DeliverySchema = z.object({
  mode: z.enum(DELIVERY_MODES),
  state: z.enum(["pending", "pushed", "failed", "conflict"]),
  remoteBranch: z.string().nullable().optional(),
  pushedSha: z.string().nullable().optional(),
  error: z.string().nullable().optional(),
  pullRequest: PullRequestSchema.nullable().optional(),
});
export type Delivery = z.infer<typeof DeliverySchema>;

export const TaskSchema = BaseTaskSchema.extend({
  agent: z.string().nullable().optional(),
  model: z.string().nullable().optional(),
  usage: UsageSchema.nullable().optional(),
  delivery: DeliverySchema.nullable().optional(),
});
/** A task as the web app knows it: the SPEC §5 task object with the newer fields optional. */
export type Task = z.infer<typeof TaskSchema>;

export const AgentOptionSchema = z.object({
  kind: z.string(),
  available: z.boolean(),
  reason: z.string().optional(),
});
export type AgentOption = z.infer<typeof AgentOptionSchema>;

export const ConfigSchema = ConfigResponseSchema.extend({
  agent: z.string(),
  agents: z.array(AgentOptionSchema).optional(),
  /** The server's default delivery: a mode, or an object that names one. */
  delivery: z.union([z.enum(DELIVERY_MODES), z.object({ mode: z.enum(DELIVERY_MODES) }).loose()]).optional(),
});
export type Config = z.infer<typeof ConfigSchema>;

export const TaskResponseSchema = z.object({ task: TaskSchema });
export const TaskListResponseSchema = z.object({ tasks: z.array(TaskSchema) });
export { DiffResponseSchema, MessageListResponseSchema };

/** The delivery mode a config names, if any. */
export function configDeliveryMode(config: Config | null | undefined): DeliveryMode | null {
  const value = config?.delivery;
  if (!value) return null;
  return typeof value === "string" ? value : value.mode;
}
