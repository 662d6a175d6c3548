/**
 * The server's typed errors. Services throw these; the HTTP layer maps `code`
 * and `httpStatus` to the API's error shape, so no route decides status codes.
 */
import type { ErrorCode } from "@repo/types";

export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    readonly httpStatus: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class ValidationError extends AppError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("VALIDATION_ERROR", 400, message, options);
  }
}

export class UnauthorizedError extends AppError {
  constructor(message = "missing or invalid API token") {
    super("UNAUTHORIZED", 401, message);
  }
}

/** A request the server will not serve whoever sends it: a foreign Host or Origin. */
export class ForbiddenError extends AppError {
  constructor(message: string) {
    super("FORBIDDEN", 403, message);
  }
}

export class NotFoundError extends AppError {
  constructor(
    readonly entity: string,
    readonly id: string,
  ) {
    super("NOT_FOUND", 404, `${entity} ${id} not found`);
  }
}

export class TaskBusyError extends AppError {
  constructor(
    readonly taskId: string,
    readonly status: string,
  ) {
    super("TASK_BUSY", 409, `task ${taskId} is ${status}; wait for it to finish or stop it`);
  }
}

export class InvalidTransitionError extends AppError {
  constructor(
    readonly taskId: string,
    readonly field: "status" | "initStatus" | "scheduledCleanupAt",
    readonly from: string | null,
    readonly to: string | null,
    detail?: string,
    options?: { cause?: unknown },
  ) {
    super(
      "INVALID_TRANSITION",
      409,
      `task ${taskId}: ${field} cannot move from ${from ?? "null"} to ${to ?? "null"}${detail ? ` (${detail})` : ""}`,
      options,
    );
  }
}

/** Every live workspace is busy: the request cannot have one now. Answered 429 with Retry-After. */
export class CapacityError extends AppError {
  constructor(
    message: string,
    /** When trying again may succeed, in seconds. */
    readonly retryAfterSeconds: number,
  ) {
    super("CAPACITY", 429, message);
  }
}

/** A push to the task's repository or a call to its forge failed; `message` says why (never with a secret). */
export class DeliveryFailedError extends AppError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("FORGE_ERROR", 502, message, options);
  }
}

/** A provisioning or workspace operation failed. `retryable` says whether trying again may help. */
export class WorkspaceError extends Error {
  constructor(
    message: string,
    readonly step: string | null,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "WorkspaceError";
  }
}

/**
 * Why a save of a workspace's work into the repository store did not complete:
 * - WORKSPACE_UNREACHABLE: the sandbox did not answer or the connection broke (retryable);
 * - WORKSPACE_MISSING: there is no workspace or sandbox to save from (not retryable);
 * - WORKSPACE_BROKEN: the workspace cannot be saved as it is, e.g. its .git was removed (not retryable);
 * - TRANSFER_FAILED: the saved commits did not arrive whole (retryable);
 * - STORE_FAILED: git failed in the repository store, e.g. a full disk (retryable);
 * - STORE_REFUSED: what arrived does not descend from the last saved commit (not retryable);
 * - BRANCH_MOVED: another save moved the task branch meanwhile (retryable).
 */
export const SAVE_FAILURE_CODES = [
  "WORKSPACE_UNREACHABLE",
  "WORKSPACE_MISSING",
  "WORKSPACE_BROKEN",
  "TRANSFER_FAILED",
  "STORE_FAILED",
  "STORE_REFUSED",
  "BRANCH_MOVED",
] as const;
export type SaveFailureCode = (typeof SAVE_FAILURE_CODES)[number];

const RETRYABLE_SAVE_FAILURES: ReadonlySet<SaveFailureCode> = new Set([
  "WORKSPACE_UNREACHABLE",
  "TRANSFER_FAILED",
  "STORE_FAILED",
  "BRANCH_MOVED",
]);

/**
 * A save did not complete: the work is still only in the workspace. `code`
 * says why, the message says it for a user (it never holds a token), and
 * `retryable` whether trying again later may succeed. Nothing was lost: the
 * store still holds the last saved commit.
 */
export class WorkspaceSaveError extends WorkspaceError {
  constructor(
    readonly code: SaveFailureCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, null, RETRYABLE_SAVE_FAILURES.has(code), options);
    this.name = "WorkspaceSaveError";
  }
}

/**
 * Why running work (an initialization or a turn) was aborted — the abort
 * signal's reason. A user's stop ends it STOPPED; the server going away also
 * ends a turn STOPPED but leaves an initialization INITIALIZING, so that the
 * next start restarts it.
 */
export class StopRequest extends Error {
  constructor(
    message: string,
    readonly byUser: boolean,
  ) {
    super(message);
    this.name = "StopRequest";
  }
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
