/**
 * The sidecar's wire format: request bodies, replies and the NDJSON events of
 * /exec. The sidecar parses requests and the client parses replies with these
 * same schemas, so the two cannot drift apart.
 */
import { z } from "zod";
import { WORKSPACE_OPERATION_ERROR_CODES } from "./types";

/** Header carrying the commit a /git/bundle reply contains. */
export const HEAD_HEADER = "x-umbra-head";

const WorkspacePath = z.string().min(1).max(4096);
const Sha = z.string().regex(/^[0-9a-f]{40,64}$/);

export const ReadFileRequest = z.object({ path: WorkspacePath });
export const WriteFileRequest = z.object({ path: WorkspacePath, content: z.string() });
export const EditFileRequest = z.object({
  path: WorkspacePath,
  search: z.string().min(1),
  replace: z.string(),
  all: z.boolean().optional(),
});
export const ListDirRequest = z.object({ path: WorkspacePath });
export const GrepRequest = z.object({
  pattern: z.string().min(1).max(10_000),
  path: WorkspacePath.optional(),
  maxResults: z.number().int().positive().max(100_000).optional(),
  ignoreCase: z.boolean().optional(),
});
export const ExecRequest = z.object({
  command: z.string().min(1),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).optional(),
  timeoutMs: z.number().int().positive().optional(),
});
export const CommitRequest = z.object({ message: z.string().min(1) });
export const BranchName = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[A-Za-z0-9._/-]+$/);
export const BundleRequest = z.object({ branch: BranchName, message: z.string().min(1).optional() });

export const OkReply = z.object({ ok: z.literal(true) });
export const ReadFileReply = z.object({ content: z.string() });
export const EditFileReply = z.object({ replacements: z.number().int().nonnegative() });
export const ListDirReply = z.object({
  entries: z.array(z.object({ name: z.string(), type: z.enum(["file", "dir", "symlink", "other"]), size: z.number() })),
});
export const GrepReply = z.object({
  matches: z.array(z.object({ path: z.string(), line: z.number().int().positive(), text: z.string() })),
});
export const CommitReply = z.object({ sha: z.string(), committed: z.boolean() });
export const HealthReply = z.object({
  ok: z.literal(true),
  workspace: z.string(),
  head: Sha.nullable(),
  branch: z.string().nullable(),
});
export type SidecarHealth = z.infer<typeof HealthReply>;
export const ReceiveReply = z.object({ head: Sha, branch: z.string() });

export const ExecEvent = z.discriminatedUnion("type", [
  z.object({ type: z.literal("stdout"), data: z.string() }),
  z.object({ type: z.literal("stderr"), data: z.string() }),
  z.object({
    type: z.literal("exit"),
    exitCode: z.number().int().nullable(),
    signal: z.string().nullable(),
    timedOut: z.boolean(),
    aborted: z.boolean(),
    /** The sandbox limit that ended the command (see CommandResult.limit). */
    limit: z.string().max(500).optional(),
  }),
]);
export type ExecEvent = z.infer<typeof ExecEvent>;

/** Error codes the sidecar answers with besides the executor's own. */
export const SIDECAR_ERROR_CODES = [
  "UNAUTHORIZED",
  "VALIDATION_ERROR",
  "PATH_REFUSED",
  "WORKSPACE_DIRTY",
  "WORKSPACE_DIVERGED",
  "WORKSPACE_NOT_EMPTY",
  "BRANCH_MISMATCH",
  "NO_REPOSITORY",
  "NO_COMMITS",
  "PAYLOAD_TOO_LARGE",
  "GIT_FAILED",
  "INTERNAL",
  "SANDBOX_UNAVAILABLE",
  ...WORKSPACE_OPERATION_ERROR_CODES,
] as const;

export const ErrorReply = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    /** For PATH_REFUSED: why, without the path. */
    reason: z.string().optional(),
  }),
});
export type ErrorReply = z.infer<typeof ErrorReply>;
