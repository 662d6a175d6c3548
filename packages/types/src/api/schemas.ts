/**
 * HTTP request and response shapes of the API (SPEC §5), as zod schemas so
 * that the server validates with them and clients can parse with them.
 */
import { z } from "zod";
import { AGENT_KINDS, INIT_STATUSES, MESSAGE_ROLES, TASK_MODES, TASK_STATUSES, TURN_OUTCOMES } from "../enums";

export const ERROR_CODES = [
  "VALIDATION_ERROR",
  "UNAUTHORIZED",
  "FORBIDDEN",
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

/**
 * The first character no text field accepts, as a description, or null:
 * C0 controls (except tab, line feed and carriage return when `multiline`),
 * DEL, C1 controls, and lone UTF-16 surrogates (not Unicode text at all).
 * Postgres cannot store NUL in text, and a control character in a title,
 * URL or branch name is never what a user meant.
 */
function forbiddenCharacter(value: string, multiline: boolean): string | null {
  for (const char of value) {
    const code = char.codePointAt(0)!;
    const control = code < 0x20 || (code >= 0x7f && code <= 0x9f);
    const allowed = multiline && (code === 0x09 || code === 0x0a || code === 0x0d);
    const loneSurrogate = code >= 0xd800 && code <= 0xdfff;
    if ((control && !allowed) || loneSurrogate) {
      const name = loneSurrogate ? "a lone surrogate" : "a control character";
      return `${name} (U+${code.toString(16).toUpperCase().padStart(4, "0")})`;
    }
  }
  return null;
}

/**
 * A text field without control characters. Checked before trimming, so a
 * leading vertical tab is refused rather than silently dropped.
 * @param multiline allow tab, line feed and carriage return (messages)
 */
export function textField(field: string, { multiline = false } = {}) {
  return z.string().superRefine((value, ctx) => {
    const found = forbiddenCharacter(value, multiline);
    if (found) ctx.addIssue({ code: "custom", message: `${field} must not contain ${found}`, abort: true });
  });
}

const GIT_URL = /^(https?:\/\/|ssh:\/\/|git:\/\/|file:\/\/|[\w.-]+@[\w.-]+:)/i;
/** `scheme://userinfo@` — the userinfo of a URL, where tokens and passwords get pasted. */
const URL_USERINFO = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)@/i;

/**
 * True when a repository URL carries a secret: any userinfo in an http(s),
 * git or file URL (a token is often pasted as the user name), a password in
 * an ssh URL. `ssh://git@host/...` and `git@host:org/repo` name a user, not a
 * secret, and pass.
 */
export function repoUrlHasCredentials(value: string): boolean {
  const match = URL_USERINFO.exec(value.trim());
  if (!match) return false;
  const [, scheme, userinfo] = match;
  return scheme!.toLowerCase() === "ssh" ? userinfo!.includes(":") : true;
}

export const REPO_URL_CREDENTIALS_MESSAGE =
  "repoUrl must not contain credentials; configure the forge token (GITHUB_TOKEN / GITLAB_TOKEN) or store it as a secret (PUT /api/secrets/:name) instead";

/** A git URL (https, ssh, git, file, scp-like) or an absolute path to a local repository; never with credentials. */
export const RepoUrlSchema = textField("repoUrl")
  .trim()
  .min(1, "repoUrl is required")
  .max(2048)
  .refine((value) => GIT_URL.test(value) || value.startsWith("/"), {
    message: "repoUrl must be a git URL (https, ssh, git, file) or an absolute path",
  })
  .refine((value) => !repoUrlHasCredentials(value), { message: REPO_URL_CREDENTIALS_MESSAGE });

/** A git branch name, checked with the rules of `git check-ref-format` that matter here. */
export const BranchNameSchema = textField("baseBranch")
  .trim()
  .min(1)
  .max(255)
  .refine(
    (value) =>
      !/[\s~^:?*[\\]/.test(value) &&
      !value.includes("..") &&
      !value.includes("@{") &&
      !value.startsWith("-") &&
      !value.startsWith("/") &&
      !value.endsWith("/") &&
      !value.endsWith(".") &&
      !value.endsWith(".lock"),
    { message: "baseBranch is not a valid branch name" },
  );

/** A user's message to the agent: multi-line text. */
export const MessageTextSchema = textField("message", { multiline: true })
  .trim()
  .min(1, "message is required")
  .max(100_000);

export const CreateTaskBodySchema = z.strictObject({
  repoUrl: RepoUrlSchema,
  message: MessageTextSchema,
  baseBranch: BranchNameSchema.optional(),
  title: textField("title").trim().min(1).max(200).optional(),
});
export type CreateTaskBody = z.infer<typeof CreateTaskBodySchema>;

export const FollowUpBodySchema = z.strictObject({
  message: MessageTextSchema,
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
