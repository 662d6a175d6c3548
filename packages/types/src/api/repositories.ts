/**
 * Shapes of the repository routes: the branch picker's list
 * (GET /api/repositories/branches) and the task branch's file browser
 * (GET /api/tasks/:id/files).
 */
import { z } from "zod";
import { RepoUrlSchema } from "./schemas";

export const BranchesQuerySchema = z.object({ repoUrl: RepoUrlSchema });

export const BranchesResponseSchema = z.object({
  /** null when the repository has no commits yet. */
  defaultBranch: z.string().nullable(),
  branches: z.array(z.string()),
});
export type BranchesResponse = z.infer<typeof BranchesResponseSchema>;

export const TaskFilesQuerySchema = z.object({ path: z.string().max(4096).default("") });

export const TreeDirEntrySchema = z.object({
  name: z.string(),
  type: z.enum(["dir", "file", "submodule"]),
  /** Bytes; null for directories and submodules. */
  size: z.number().int().nullable(),
});

export const TaskFilesResponseSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("dir"),
    path: z.string(),
    /** The commit of the task branch that was read. */
    commit: z.string(),
    entries: z.array(TreeDirEntrySchema),
  }),
  z.object({
    type: z.literal("file"),
    path: z.string(),
    commit: z.string(),
    size: z.number().int(),
    /** The file holds NUL bytes; its content is not sent. */
    binary: z.boolean(),
    /** The file is too large to show; its content is not sent. */
    truncated: z.boolean(),
    content: z.string(),
  }),
]);
export type TaskFilesResponse = z.infer<typeof TaskFilesResponseSchema>;
