/**
 * The initialization stepper: the mode's provisioning steps (from GET
 * /api/config), each pending, current, done or failed. A failed step shows
 * the error and a Retry action.
 */
import { InitStatus, type TaskDto, TaskStatus } from "@repo/types";
import { useId } from "react";
import { computeStepper, type LiveInitProgress, type StepState } from "../init-progress";
import { initializationLabel } from "../status-display";

const STATE_TEXT: Record<StepState, string> = {
  pending: "pending",
  current: "in progress",
  done: "done",
  failed: "failed",
};

function StepMarker({ state, index }: { state: StepState; index: number }) {
  return (
    <span className={`step-marker step-marker--${state}`} aria-hidden="true">
      {state === "done" ? "✓" : state === "failed" ? "!" : index + 1}
    </span>
  );
}

export interface InitStepperProps {
  steps: readonly InitStatus[];
  task: Pick<TaskDto, "status" | "initStatus" | "initializationError">;
  progress?: LiveInitProgress;
  reinitializing: boolean;
  onRetry?: () => void;
  retrying?: boolean;
  retryError?: string | null;
}

function heading(props: InitStepperProps, failed: boolean): string {
  const { task } = props;
  if (task.status === TaskStatus.INITIALIZING && !failed) return initializationLabel(props.reinitializing);
  if (failed) return "Workspace initialization failed";
  if (task.initStatus === InitStatus.ACTIVE) return "Workspace ready";
  if (task.status === TaskStatus.ARCHIVED) return "Workspace archived";
  return "Workspace inactive";
}

function FailureNotice(props: InitStepperProps & { error: string | null }) {
  return (
    <div className="step-error" role="alert">
      <p className="step-error-text">{props.error ?? "Initialization failed"}</p>
      {props.onRetry && (
        <button type="button" className="button" onClick={props.onRetry} disabled={props.retrying}>
          {props.retrying ? "Retrying…" : "Retry"}
        </button>
      )}
      {props.retryError && <p className="field-error">{props.retryError}</p>}
    </div>
  );
}

export function InitStepper(props: InitStepperProps) {
  const model = computeStepper(props.steps, props.task, props.progress);
  const headingId = useId();
  const title = heading(props, model.failed);
  const active = props.task.status === TaskStatus.INITIALIZING && !model.failed;
  return (
    <section
      className={`stepper${active ? " stepper--active" : ""}${model.failed ? " stepper--failed" : ""}`}
      aria-labelledby={headingId}
      data-testid="init-stepper"
    >
      <h2 id={headingId} className="stepper-title">
        {title}
      </h2>
      <ol className="stepper-steps">
        {model.steps.map((step, index) => (
          <li
            key={step.step}
            className={`step step--${step.state}`}
            data-step={step.step}
            data-state={step.state}
            aria-current={step.state === "current" ? "step" : undefined}
          >
            <StepMarker state={step.state} index={index} />
            <span className="step-name">{step.name}</span>
            <span className="visually-hidden">: {STATE_TEXT[step.state]}</span>
            {step.state === "current" && <span className="step-spinner" aria-hidden="true" />}
            {step.state === "failed" && <FailureNotice {...props} error={step.error ?? model.error} />}
          </li>
        ))}
      </ol>
      {model.failed && model.failedStep === null && <FailureNotice {...props} error={model.error} />}
    </section>
  );
}
