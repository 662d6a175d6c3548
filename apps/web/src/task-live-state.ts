/**
 * The task page's state and the one reducer that folds HTTP answers and
 * socket events into it. Pure, so ordering rules are testable without a
 * server:
 *
 * - The task snapshot with the newest `updatedAt` wins: a status event older
 *   than a fetched task is stale, and so is a fetch answered before an event
 *   that has already been applied.
 * - Entering INITIALIZING starts a new initialization run (live step progress
 *   is reset).
 * - `hadWorkspace` remembers that this task had a workspace before — it ran,
 *   completed or was archived — so a later INITIALIZING is a re-initialization.
 * - `initLog` holds the current initialization run's events as log lines for
 *   the Setup tab; a new run starts a new log.
 */
import {
  type DiffResponse,
  type InitProgressEvent,
  InitStatus,
  type MessageDto,
  STEP_DISPLAY_NAMES,
  type StreamChunkEvent,
  TaskStatus,
  type TaskStatusUpdateEvent,
} from "@repo/types";
import type { Delivery, Task } from "./api/schemas";
import { applyChunk, type ChatItem, reconcileStreamed } from "./conversation";
import { EMPTY_PROGRESS, type LiveInitProgress, reduceInitProgress } from "./init-progress";

/** One line of the Setup tab's log. */
export interface InitLogEntry {
  /** Position in the run, for keys. */
  id: number;
  tone: "info" | "done" | "error";
  text: string;
}

/** Most lines kept per initialization run. */
const INIT_LOG_LIMIT = 500;

export interface TaskLiveState {
  task: Task | null;
  messages: MessageDto[];
  streamed: ChatItem[];
  diff: DiffResponse | null;
  diffError: string | null;
  progress: LiveInitProgress;
  initLog: InitLogEntry[];
  hadWorkspace: boolean;
  loadError: string | null;
  /** The server says the task does not exist. */
  notFound: boolean;
}

export const INITIAL_STATE: TaskLiveState = {
  task: null,
  messages: [],
  streamed: [],
  diff: null,
  diffError: null,
  progress: EMPTY_PROGRESS,
  initLog: [],
  hadWorkspace: false,
  loadError: null,
  notFound: false,
};

export type TaskLiveAction =
  | { type: "task"; task: Task }
  | { type: "delivery"; delivery: Delivery }
  | { type: "status-event"; event: TaskStatusUpdateEvent }
  | { type: "init-progress"; event: InitProgressEvent }
  | { type: "chunk"; event: StreamChunkEvent }
  | { type: "messages"; messages: MessageDto[]; turnOver: boolean }
  | { type: "diff"; diff: DiffResponse }
  | { type: "diff-error"; message: string }
  | { type: "load-error"; message: string; notFound: boolean }
  | { type: "reset" };

/** The task shows that it had a workspace at this moment. */
export function showsWorkspace(task: Pick<Task, "status" | "initStatus">): boolean {
  switch (task.status) {
    case TaskStatus.RUNNING:
    case TaskStatus.COMPLETED:
    case TaskStatus.ARCHIVED:
      return true;
    case TaskStatus.STOPPED:
    case TaskStatus.FAILED:
      return task.initStatus === InitStatus.ACTIVE;
    case TaskStatus.INITIALIZING:
      return false;
  }
}

/** Provisioning again for a task that had a workspace before (or has agent output to show for it). */
export function isReinitializing(state: Pick<TaskLiveState, "task" | "hadWorkspace" | "messages">): boolean {
  if (state.task?.status !== TaskStatus.INITIALIZING) return false;
  return state.hadWorkspace || state.messages.some((m) => m.role === "assistant" || m.role === "tool");
}

function time(iso: string): number {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : t;
}

/** The log line an init-progress event adds, or null for events that say nothing new. */
export function initLogLine(event: InitProgressEvent): Omit<InitLogEntry, "id"> | null {
  const step = event.currentStep && event.currentStep in STEP_DISPLAY_NAMES ? event.currentStep : null;
  const name = event.stepName ?? (step ? STEP_DISPLAY_NAMES[step as keyof typeof STEP_DISPLAY_NAMES] : "");
  const counter = event.stepNumber ? ` (${event.stepNumber}/${event.totalSteps})` : "";
  switch (event.type) {
    case "init-start":
      return { tone: "info", text: event.message ?? `Preparing the workspace: ${event.totalSteps} steps` };
    case "step-start":
      return { tone: "info", text: `${name}${counter}…${event.message ? ` ${event.message}` : ""}` };
    case "step-complete":
      return { tone: "done", text: `${name}${counter} done${event.message ? ` — ${event.message}` : ""}` };
    case "init-complete":
      return { tone: "done", text: event.message ?? "Workspace ready" };
    case "init-error":
      return { tone: "error", text: `${name ? `${name}: ` : ""}${event.error ?? event.message ?? "failed"}` };
  }
}

function appendLog(log: InitLogEntry[], event: InitProgressEvent): InitLogEntry[] {
  const line = initLogLine(event);
  const base = event.type === "init-start" ? [] : log;
  if (!line) return base;
  const next = [...base, { ...line, id: (base.at(-1)?.id ?? -1) + 1 }];
  return next.length > INIT_LOG_LIMIT ? next.slice(-INIT_LOG_LIMIT) : next;
}

function acceptTask(state: TaskLiveState, next: Task): TaskLiveState {
  const current = state.task;
  if (current && current.id === next.id && time(next.updatedAt) < time(current.updatedAt)) return state;
  const restarted = next.status === TaskStatus.INITIALIZING && current?.status !== TaskStatus.INITIALIZING;
  return {
    ...state,
    task: next,
    loadError: null,
    notFound: false,
    hadWorkspace: state.hadWorkspace || (current !== null && showsWorkspace(current)) || showsWorkspace(next),
    progress: restarted ? EMPTY_PROGRESS : state.progress,
    initLog: restarted ? [] : state.initLog,
  };
}

export function taskLiveReducer(state: TaskLiveState, action: TaskLiveAction): TaskLiveState {
  switch (action.type) {
    case "reset":
      return INITIAL_STATE;
    case "task":
      return acceptTask(state, action.task);
    case "status-event": {
      const { event } = action;
      if (!state.task || state.task.id !== event.taskId) return state;
      return acceptTask(state, {
        ...state.task,
        status: event.status,
        initStatus: event.initStatus,
        scheduledCleanupAt: event.scheduledCleanupAt,
        errorMessage: event.errorMessage,
        initializationError:
          event.initializationError !== undefined ? event.initializationError : state.task.initializationError,
        updatedAt: event.timestamp,
      });
    }
    case "init-progress":
      return {
        ...state,
        progress: reduceInitProgress(state.progress, action.event),
        initLog: appendLog(state.initLog, action.event),
      };
    case "delivery":
      return state.task ? { ...state, task: { ...state.task, delivery: action.delivery } } : state;
    case "chunk":
      return { ...state, streamed: applyChunk(state.streamed, action.event) };
    case "messages":
      return {
        ...state,
        messages: action.messages,
        streamed: reconcileStreamed(state.streamed, action.messages, action.turnOver),
      };
    case "diff":
      return { ...state, diff: action.diff, diffError: null };
    case "diff-error":
      return { ...state, diffError: action.message };
    case "load-error":
      return { ...state, loadError: action.message, notFound: action.notFound };
  }
}
