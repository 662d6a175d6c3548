/**
 * The initialization stepper's model: which provisioning step is pending,
 * current, done or failed, from the task's persisted fields (`status`,
 * `initStatus`, `initializationError`) and the live `init-progress` events of
 * the run in flight.
 *
 * The persisted fields are the truth after a reload or reconnect; the live
 * events only fill in what the fields cannot say — chiefly which step failed,
 * because a failed run leaves `initStatus` back at INACTIVE and names the
 * step only inside `initializationError`.
 */
import {
  type InitializationProgress,
  InitStatus,
  isInitStep,
  STEP_DISPLAY_NAMES,
  type TaskDto,
  TaskStatus,
} from "@repo/types";

export type StepState = "pending" | "current" | "done" | "failed";

export interface StepView {
  step: InitStatus;
  name: string;
  state: StepState;
  /** Set on the failed step. */
  error?: string;
}

/** What the live events of the current initialization run said. */
export interface LiveInitProgress {
  current: InitStatus | null;
  completed: readonly InitStatus[];
  failedStep: InitStatus | null;
  error: string | null;
}

export const EMPTY_PROGRESS: LiveInitProgress = { current: null, completed: [], failedStep: null, error: null };

/** Folds one `init-progress` event into the run's live state. `init-start` begins a new run. */
export function reduceInitProgress(state: LiveInitProgress, event: InitializationProgress): LiveInitProgress {
  switch (event.type) {
    case "init-start":
      return EMPTY_PROGRESS;
    case "step-start":
      return event.currentStep ? { ...state, current: event.currentStep, failedStep: null, error: null } : state;
    case "step-complete": {
      const step = event.currentStep ?? event.lastCompletedStep;
      if (!step || state.completed.includes(step)) return state;
      return { ...state, completed: [...state.completed, step] };
    }
    case "init-complete":
      return { ...state, current: InitStatus.ACTIVE };
    case "init-error":
      return {
        ...state,
        failedStep: event.currentStep ?? state.current,
        error: event.error ?? event.message ?? "Initialization failed",
      };
    case "step-log":
      // The setup log's pieces; the stepper's state does not change with them.
      return state;
  }
}

/**
 * The step an `initializationError` names, by its enum value (CREATE_VM) or
 * its display name ("Creating sandbox"); the earliest mention wins.
 */
export function findFailedStep(error: string | null, steps: readonly InitStatus[]): InitStatus | null {
  if (!error) return null;
  const text = error.toLowerCase();
  let best: { step: InitStatus; at: number } | null = null;
  for (const step of steps) {
    for (const needle of [step, STEP_DISPLAY_NAMES[step]]) {
      const at = text.indexOf(needle.toLowerCase());
      if (at >= 0 && (best === null || at < best.at)) best = { step, at };
    }
  }
  return best?.step ?? null;
}

export type StepperTask = Pick<TaskDto, "status" | "initStatus" | "initializationError">;

export interface StepperModel {
  steps: StepView[];
  /** Initialization failed; `failedStep` is null when no step could be identified. */
  failed: boolean;
  failedStep: InitStatus | null;
  error: string | null;
}

function isInitFailure(task: StepperTask, live: LiveInitProgress): boolean {
  if (task.status === TaskStatus.INITIALIZING) return live.failedStep !== null;
  return (
    task.status === TaskStatus.FAILED && task.initializationError !== null && task.initStatus !== InitStatus.ACTIVE
  );
}

function view(step: InitStatus, state: StepState, error?: string): StepView {
  return error === undefined
    ? { step, name: STEP_DISPLAY_NAMES[step], state }
    : { step, name: STEP_DISPLAY_NAMES[step], state, error };
}

/** Pending / current / done / failed for each step of the mode, in order. */
export function computeStepper(
  steps: readonly InitStatus[],
  task: StepperTask,
  live: LiveInitProgress = EMPTY_PROGRESS,
): StepperModel {
  if (isInitFailure(task, live)) {
    const error = task.initializationError ?? live.error ?? "Initialization failed";
    const failedStep =
      [live.failedStep, findFailedStep(task.initializationError, steps), task.initStatus].find(
        (s): s is InitStatus => s !== null && steps.includes(s),
      ) ?? null;
    const failedAt = failedStep === null ? -1 : steps.indexOf(failedStep);
    return {
      failed: true,
      failedStep,
      error,
      steps: steps.map((step, i) => {
        if (failedAt < 0) return view(step, "pending");
        if (i < failedAt) return view(step, "done");
        return i === failedAt ? view(step, "failed", error) : view(step, "pending");
      }),
    };
  }

  const none: StepperModel = { failed: false, failedStep: null, error: null, steps: [] };
  if (task.initStatus === InitStatus.ACTIVE) {
    return { ...none, steps: steps.map((step) => view(step, "done")) };
  }

  const initializing = task.status === TaskStatus.INITIALIZING;
  let position = isInitStep(task.initStatus) ? steps.indexOf(task.initStatus) : -1;
  if (initializing && live.current !== null) {
    // A live step-start can arrive a moment before the matching status update.
    position = live.current === InitStatus.ACTIVE ? steps.length : Math.max(position, steps.indexOf(live.current));
  }
  return {
    ...none,
    steps: steps.map((step, i) => {
      if (i < position || (initializing && live.completed.includes(step))) return view(step, "done");
      if (i === position && initializing) return view(step, "current");
      return view(step, "pending");
    }),
  };
}
