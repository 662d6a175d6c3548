/**
 * What the task page's status line says for a task: one pure function of the
 * task's two status fields, the server's mode and the current time, so every
 * combination can be checked in a table and the countdown tested with a fixed
 * clock.
 *
 * `status` decides the headline; `initStatus` only adds detail (which step is
 * running, whether the workspace still exists). The warm-window countdown is
 * shown only in remote mode, while the workspace is ACTIVE and a cleanup is
 * scheduled — the same condition under which the server sets
 * `scheduledCleanupAt` (SPEC §1).
 */
import {
  type ConfigResponse,
  getStepsForMode,
  InitStatus,
  isInitStep,
  STEP_DISPLAY_NAMES,
  type TaskDto,
  type TaskMode,
  TaskStatus,
} from "@repo/types";

export type StatusTone = "progress" | "success" | "neutral" | "warning" | "danger";

export interface StatusCountdown {
  /** Milliseconds until the warm workspace is cleaned up, never negative. */
  remainingMs: number;
  /** The countdown as m:ss. */
  clock: string;
  /** The sentence the UI shows, e.g. "Workspace kept warm for 9:59". */
  text: string;
}

export interface StatusDescription {
  label: string;
  tone: StatusTone;
  /** A second sentence: the step, the error or what to do next. */
  detail: string | null;
  countdown?: StatusCountdown;
}

export type StatusTask = Pick<
  TaskDto,
  "status" | "initStatus" | "mode" | "scheduledCleanupAt" | "errorMessage" | "initializationError"
>;

/** The parts of GET /api/config the status line reads; null while it loads. */
export type StatusConfig = (Pick<ConfigResponse, "mode"> & { steps?: readonly InitStatus[] }) | null;

export interface DescribeOptions {
  /** The task is provisioning again after it had a workspace before. */
  reinitializing?: boolean;
}

const ARCHIVED_DETAIL = "The workspace was archived. Sending a message re-creates it.";

/** The reason the server records when a user presses Stop. */
const USER_STOP = /^stopped by (the )?user$/i;
/** Why a stopped task stopped, in words: the user, or the reason the server recorded. */
export function stopDetail(errorMessage: string | null): string {
  if (!errorMessage || USER_STOP.test(errorMessage)) return "Stopped by request.";
  return /[.!?]$/.test(errorMessage) ? errorMessage : `${errorMessage}.`;
}

/** Formats a duration as m:ss (minutes are not capped at 59). Negative durations read 0:00. */
export function formatCountdown(ms: number): string {
  const totalSeconds = Math.max(0, Math.floor(ms / 1000));
  const minutes = Math.floor(totalSeconds / 60);
  const seconds = totalSeconds % 60;
  return `${minutes}:${String(seconds).padStart(2, "0")}`;
}

/** The headline of a provisioning run. */
export function initializationLabel(reinitializing: boolean): string {
  return reinitializing ? "Re-initializing workspace" : "Initializing workspace";
}

function effectiveMode(task: StatusTask, config: StatusConfig): TaskMode {
  return config?.mode ?? task.mode;
}

function warmCountdown(task: StatusTask, config: StatusConfig, now: number): StatusCountdown | undefined {
  if (effectiveMode(task, config) !== "remote") return undefined;
  if (task.initStatus !== InitStatus.ACTIVE || task.scheduledCleanupAt === null) return undefined;
  const deadline = Date.parse(task.scheduledCleanupAt);
  if (Number.isNaN(deadline)) return undefined;
  const remainingMs = Math.max(0, deadline - now);
  const clock = formatCountdown(remainingMs);
  const text = remainingMs > 0 ? `Workspace kept warm for ${clock}` : "Cleaning up the workspace…";
  return { remainingMs, clock, text };
}

function initializingDetail(task: StatusTask, steps: readonly InitStatus[]): string {
  if (isInitStep(task.initStatus)) {
    const index = steps.indexOf(task.initStatus);
    const name = STEP_DISPLAY_NAMES[task.initStatus];
    return index >= 0 ? `Step ${index + 1} of ${steps.length}: ${name}` : name;
  }
  if (task.initStatus === InitStatus.ACTIVE) return "Workspace ready — starting the agent";
  return "Waiting for the first step to start";
}

/** The status line for a task at time `now` (ms since the epoch). */
export function describeStatus(
  task: StatusTask,
  config: StatusConfig,
  now: number,
  options: DescribeOptions = {},
): StatusDescription {
  const inactive = task.initStatus === InitStatus.INACTIVE;
  switch (task.status) {
    case TaskStatus.INITIALIZING: {
      const steps = config?.steps ?? getStepsForMode(effectiveMode(task, config));
      return {
        label: initializationLabel(options.reinitializing === true),
        tone: "progress",
        detail: initializingDetail(task, steps),
      };
    }
    case TaskStatus.RUNNING:
      return { label: "Agent working…", tone: "progress", detail: null };
    case TaskStatus.COMPLETED: {
      const countdown = warmCountdown(task, config, now);
      return {
        label: "Ready for follow-up",
        tone: "success",
        detail: inactive ? ARCHIVED_DETAIL : readyDetail(task, config),
        ...(countdown ? { countdown } : {}),
      };
    }
    case TaskStatus.STOPPED: {
      const countdown = warmCountdown(task, config, now);
      return {
        label: "Stopped",
        tone: "warning",
        detail: inactive
          ? `${stopDetail(task.errorMessage)} ${ARCHIVED_DETAIL}`
          : `${stopDetail(task.errorMessage)}${/follow-up/i.test(task.errorMessage ?? "") ? "" : " Send a follow-up to continue."}`,
        ...(countdown ? { countdown } : {}),
      };
    }
    case TaskStatus.FAILED: {
      const countdown = warmCountdown(task, config, now);
      const error = task.errorMessage ?? task.initializationError ?? "The task failed without an error message.";
      return {
        label: "Failed",
        tone: "danger",
        detail: error,
        ...(countdown ? { countdown } : {}),
      };
    }
    case TaskStatus.ARCHIVED:
      return { label: "Workspace archived", tone: "neutral", detail: "Sending a message re-creates it." };
  }
}

function readyDetail(task: StatusTask, config: StatusConfig): string {
  if (task.initStatus === InitStatus.ACTIVE) {
    return effectiveMode(task, config) === "remote"
      ? "The workspace is warm: a follow-up starts at once."
      : "The workspace is ready: a follow-up starts at once.";
  }
  return `Workspace: ${STEP_DISPLAY_NAMES[task.initStatus]}.`;
}
