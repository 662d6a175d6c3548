/**
 * HTTP request and response shapes of the API (SPEC §5), as zod schemas so
 * that the server validates with them and clients can parse with them.
 */
import { z } from "zod";
import { AGENT_KINDS, INIT_STATUSES, MESSAGE_ROLES, TASK_MODES, TASK_STATUSES, TURN_OUTCOMES } from "../enums";

export const ERROR_CODES = [
  "VALIDATION_ERROR",
  "UNAUTHORIZED",
  "NOT_FOUND",
  "TASK_BUSY",
  "INVALID_TRANSITION",
  "INTERNAL",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const ErrorBodySchema = z.object({
  error: z.object({ code: z.enum(ERROR_CODES), message: z.string() }),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

const GIT_URL = /^(https?:\/\/|ssh:\/\/|git:\/\/|file:\/\/|[\w.-]+@[\w.-]+:)/;

/** A git URL (https, ssh, git, file, scp-like) or an absolute path to a local repository. */
export const RepoUrlSchema = z
  .string()
  .trim()
  .min(1, "repoUrl is required")
  .max(2048)
  .refine((value) => GIT_URL.test(value) || value.startsWith("/"), {
    message: "repoUrl must be a git URL (https, ssh, git, file) or an absolute path",
  });

/** A git branch name, checked with the rules of `git check-ref-format` that matter here. */
export const BranchNameSchema = z
  .string()
  .trim()
  .min(1)
  .max(255)
  .refine(
    (value) =>
      !/[\s~^:?*[\\]/.test(value) &&
      ![...value].some((char) => char.charCodeAt(0) < 0x20 || char.charCodeAt(0) === 0x7f) &&
      !value.includes("..") &&
      !value.includes("@{") &&
      !value.startsWith("-") &&
      !value.startsWith("/") &&
      !value.endsWith("/") &&
      !value.endsWith(".") &&
      !value.endsWith(".lock"),
    { message: "baseBranch is not a valid branch name" },
  );

export const CreateTaskBodySchema = z.strictObject({
  repoUrl: RepoUrlSchema,
  message: z.string().trim().min(1, "message is required").max(100_000),
  baseBranch: BranchNameSchema.optional(),
  title: z.string().trim().min(1).max(200).optional(),
});
export type CreateTaskBody = z.infer<typeof CreateTaskBodySchema>;

export const FollowUpBodySchema = z.strictObject({
  message: z.string().trim().min(1, "message is required").max(100_000),
});
export type FollowUpBody = z.infer<typeof FollowUpBodySchema>;

export const TaskIdSchema = z.uuid();

export const TaskSchema = z.object({
  id: z.string(),
  title: z.string(),
  status: z.enum(TASK_STATUSES),
  initStatus: z.enum(INIT_STATUSES),
  mode: z.enum(TASK_MODES),
  repoUrl: z.string(),
  baseBranch: z.string().nullable(),
  branch: z.string().nullable(),
  baseCommitSha: z.string().nullable(),
  scheduledCleanupAt: z.string().nullable(),
  initializationError: z.string().nullable(),
  errorMessage: z.string().nullable(),
  /** How the last turn (or a failed or stopped initialization) ended; kept when the task is archived. */
  lastOutcome: z.enum(TURN_OUTCOMES).nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type TaskDto = z.infer<typeof TaskSchema>;

export const MessageSchema = z.object({
  id: z.string(),
  role: z.enum(MESSAGE_ROLES),
  content: z.string(),
  sequence: z.number().int(),
  metadata: z.record(z.string(), z.unknown()).nullable().optional(),
  createdAt: z.string(),
});
export type MessageDto = z.infer<typeof MessageSchema>;

export const TaskResponseSchema = z.object({ task: TaskSchema });
export const TaskListResponseSchema = z.object({ tasks: z.array(TaskSchema) });
export const MessageListResponseSchema = z.object({ messages: z.array(MessageSchema) });

export const ConfigResponseSchema = z.object({
  mode: z.enum(TASK_MODES),
  steps: z.array(z.enum(INIT_STATUSES)),
  cleanupDelayMs: z.number().int(),
  agent: z.enum(AGENT_KINDS),
});
export type ConfigResponse = z.infer<typeof ConfigResponseSchema>;

export const DiffFileSchema = z.object({ path: z.string(), additions: z.number(), deletions: z.number() });
export const DiffResponseSchema = z.object({
  baseCommitSha: z.string().nullable(),
  branch: z.string().nullable(),
  files: z.array(DiffFileSchema),
  patch: z.string(),
});
export type DiffResponse = z.infer<typeof DiffResponseSchema>;
