/**
 * The task branch between the repository store and a sandbox, both ways,
 * streamed and incremental:
 *
 * - sendBranch (VERIFY_VM_WORKSPACE): the sandbox says which commits it has,
 *   the store streams a pack of only what those lack (a fresh sandbox gets
 *   the whole branch) and the sandbox checks the branch out at the saved head.
 * - saveBranch (after every turn, before every teardown): the sandbox puts
 *   whatever the agent left onto the task branch, descending from the last
 *   saved commit, and streams back only the objects of the new commits.
 *
 * Nothing of a pack passes through this process's memory: HTTP bodies are
 * piped to and from git processes, and a saved pack goes from the sidecar
 * into the store's git through the spawn host without passing through this
 * process at all. Every failure of a save is one
 * WorkspaceSaveError with its reason.
 */
import type { Readable } from "node:stream";
import type { TaskRow } from "@repo/db";
import { InitStatus } from "@repo/types";
import {
  FeedError,
  GitError,
  PackMeter,
  type PackStats,
  readBorrowedTips,
  SaveRefusedError,
  type SidecarClient,
  SidecarError,
  spawnHostRunning,
} from "@repo/workspace";
import { errorMessage, WorkspaceError, WorkspaceSaveError } from "../../errors";
import type { Logger } from "../../logger";
import type { RepositoryStore } from "../../repository/repository-store";

export interface SavedBranch {
  head: string;
  /** What went to the store (nothing when the save made no new commit). */
  sent: PackStats | null;
}

/**
 * Makes the sandbox a checkout of the task branch at its saved head; sends
 * only what the sandbox lacks. `borrow`: the repository's borrowed-objects
 * directory, bound into the sandbox; a new sandbox that can read it borrows
 * the upstream history from it and is sent only the rest.
 */
export async function sendBranch(
  store: RepositoryStore,
  client: SidecarClient,
  task: TaskRow,
  log: Logger,
  borrow?: string,
): Promise<{ head: string; sent: PackStats }> {
  const started = performance.now();
  const branch = task.branch!;
  const head = await store.savedHead(task.repoUrl, branch);
  const haves = await client.haves(borrow);
  const borrowed = haves.borrows && borrow ? await readBorrowedTips(borrow) : [];
  const pack = await store.packFor(task.repoUrl, head, [...haves.commits, ...borrowed]);
  const meter = new PackMeter();
  let packError: Error | null = null;
  pack.once("error", (error) => {
    packError = error;
    meter.destroy(error);
  });
  try {
    const received = await client.receiveBranch(
      branch,
      head,
      pack.pipe(meter),
      borrowed.length > 0 ? borrow : undefined,
    );
    if (received.head !== head) {
      throw new WorkspaceError(
        `the sandbox checked out ${received.head}, expected ${head}`,
        InitStatus.VERIFY_VM_WORKSPACE,
        true,
      );
    }
  } catch (error) {
    pack.destroy();
    if (packError) {
      throw new WorkspaceError(
        `reading the task branch from the repository store failed: ${errorMessage(packError)}`,
        InitStatus.VERIFY_VM_WORKSPACE,
        true,
        { cause: packError },
      );
    }
    throw error;
  }
  const sent = meter.stats;
  log.info(
    { head, ...sent, borrowedTips: borrowed.length, ms: Math.round(performance.now() - started) },
    "workspace.branch.sent",
  );
  return { head, sent };
}

/** Saves whatever the sandbox holds onto the task branch in the store; see the module comment. */
export async function saveBranch(
  store: RepositoryStore,
  client: SidecarClient,
  task: TaskRow,
  message: string,
  log: Logger,
): Promise<SavedBranch> {
  const started = performance.now();
  const branch = task.branch!;
  const base = await store.savedHead(task.repoUrl, branch).catch((error: unknown) => {
    throw new WorkspaceSaveError("STORE_FAILED", `the task branch is missing from the repository store`, {
      cause: error,
    });
  });
  let sent: PackStats | null = null;
  let pack: Readable | null = null;
  try {
    const saved = await client.saveBranch(branch, base, message);
    if (saved.head !== base) {
      // Through the spawn host the pack goes from the sidecar into git without passing through
      // this process: a 1 GiB save then costs the server's event loop nothing.
      if (!spawnHostRunning()) pack = await client.packObjects(saved.head, [base]);
      const source = pack ?? client.packObjectsFeed(saved.head, [base]);
      sent = await store.receivePack(task.repoUrl, branch, source, { base, head: saved.head });
    }
    log.info(
      {
        head: saved.head,
        base,
        committed: saved.committed,
        rewritten: saved.rewritten,
        previousBranch: saved.previous.branch,
        objects: sent?.objects ?? 0,
        bytes: sent?.bytes ?? 0,
        ms: Math.round(performance.now() - started),
      },
      "workspace.saved",
    );
    return { head: saved.head, sent };
  } catch (error) {
    pack?.destroy();
    // A pack request the sidecar refused or never answered fails as the same request made here would have.
    const fed = feedErrorIn(error);
    const refused = fed && !fed.byProcess && (fed.status !== 0 || fed.bytes === 0);
    throw toSaveError(refused ? client.feedError(fed) : error);
  }
}

function feedErrorIn(error: unknown): FeedError | null {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    if (cause instanceof FeedError) return cause;
  }
  return null;
}

/** The one error a failed save becomes, with its reason. */
export function toSaveError(error: unknown): WorkspaceSaveError {
  if (error instanceof WorkspaceSaveError) return error;
  const options = { cause: error };
  if (error instanceof SidecarError) {
    if (error.status === 0) {
      return new WorkspaceSaveError("WORKSPACE_UNREACHABLE", `the sandbox did not answer: ${error.message}`, options);
    }
    if (error.status === 409) {
      return new WorkspaceSaveError("WORKSPACE_BROKEN", `the sandbox cannot be saved: ${error.message}`, options);
    }
    return new WorkspaceSaveError("WORKSPACE_BROKEN", `the sandbox failed to save: ${error.message}`, options);
  }
  if (error instanceof SaveRefusedError) {
    return new WorkspaceSaveError("WORKSPACE_BROKEN", `the workspace cannot be saved: ${error.message}`, options);
  }
  if (error instanceof GitError) {
    return new WorkspaceSaveError("STORE_FAILED", `the repository store failed: ${error.reason}`, options);
  }
  if (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError")) {
    return new WorkspaceSaveError("WORKSPACE_UNREACHABLE", `the sandbox stopped answering: ${error.message}`, options);
  }
  return new WorkspaceSaveError("TRANSFER_FAILED", `saving failed: ${errorMessage(error)}`, options);
}
