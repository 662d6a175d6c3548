/**
 * The sidecar's wire format: request bodies, replies and the NDJSON events of
 * /exec. The sidecar parses requests and the client parses replies with these
 * same schemas, so the two cannot drift apart.
 */
import { z } from "zod";
import { WORKSPACE_OPERATION_ERROR_CODES } from "./types";

/** Content type of the git packs /git/receive takes and /git/pack answers with. */
export const PACK_CONTENT_TYPE = "application/x-git-packed-objects";
/** Most commits a workspace reports having, and a pack request may exclude. */
export const MAX_HAVES = 64;

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
/**
 * A directory of upstream objects the server offers a new workspace to borrow
 * (git alternates): absolute, normalized, one line (alternates are a list of lines).
 */
export const BorrowedDir = z
  .string()
  .max(4096)
  .refine(
    (path) =>
      path.startsWith("/") &&
      ![...path].some((char) => char.charCodeAt(0) < 0x20 || char === "\x7f") &&
      !path.includes("//") &&
      !path.split("/").some((part) => part === "." || part === ".."),
  );
/** /git/haves's query: with `borrow`, a workspace with no repository yet says whether it can borrow it. */
export const HavesQuery = z.object({ borrow: BorrowedDir.optional() });
/**
 * /git/receive's query: the branch to check out and the commit it must point
 * to (the pack's tip); with `borrow`, a new repository borrows that directory's objects.
 */
export const ReceiveQuery = z.object({ branch: BranchName, tip: Sha, borrow: BorrowedDir.optional() });
/** /git/save: put the workspace on `branch`, descending from `base` (the last saved commit). */
export const SaveRequest = z.object({ branch: BranchName, base: Sha, message: z.string().min(1) });
/** /git/pack: the objects of `tip`'s history that the `exclude` commits' histories lack. */
export const PackRequest = z.object({ tip: Sha, exclude: z.array(Sha).max(MAX_HAVES) });

/** Paths (relative to the workspace) whose tar archive /archive/pack answers with. */
export const ArchivePackRequest = z.object({ paths: z.array(WorkspacePath).min(1).max(100_000) });

/** /git/tracked: pathspecs (git's own syntax, magic included) of the tracked files to list. */
export const TrackedFilesRequest = z.object({
  pathspecs: z
    .array(
      z
        .string()
        .min(1)
        .max(1024)
        .refine((spec) => !spec.includes("\0")),
    )
    .min(1)
    .max(1000),
});
export const TrackedFilesReply = z.object({ root: z.string(), records: z.string() });

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
export type ReceiveReply = z.infer<typeof ReceiveReply>;
/** Commits the workspace has (tips of its refs), newest first: what a sender need not send again. */
export const HavesReply = z.object({
  commits: z.array(Sha).max(MAX_HAVES),
  /** True when the workspace has no repository yet and can read the offered `borrow` directory: a receive borrows it. */
  borrows: z.boolean().optional(),
});
export const SaveReply = z.object({
  head: Sha,
  base: Sha,
  committed: z.boolean(),
  rewritten: z.boolean(),
  previous: z.object({ head: Sha.nullable(), branch: z.string().nullable() }),
});
export type SaveReply = z.infer<typeof SaveReply>;

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
  "NO_REPOSITORY",
  "NO_COMMITS",
  "NO_AGENT_STATE",
  "BASE_MISSING",
  "UNKNOWN_COMMIT",
  "BAD_PACK",
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
