/**
 * The Setup tab: the initialization stepper and the log of the current run's
 * steps. Once the workspace is ready the log folds away behind a one-line
 * summary; a failed run keeps it open next to the error.
 */
import type { InitStatus } from "@repo/types";
import type { Task } from "../api/schemas";
import type { LiveInitProgress } from "../init-progress";
import type { InitLogEntry } from "../task-live-state";
import { InitStepper } from "./init-stepper";

export interface SetupPanelProps {
  steps: readonly InitStatus[];
  task: Task;
  progress: LiveInitProgress;
  log: InitLogEntry[];
  reinitializing: boolean;
  onRetry?: () => void;
  retrying: boolean;
}

export function SetupPanel({ log, ...props }: SetupPanelProps) {
  const ready = props.task.initStatus === "ACTIVE";
  return (
    <div className="setup">
      <InitStepper
        steps={props.steps}
        task={props.task}
        progress={props.progress}
        reinitializing={props.reinitializing}
        {...(props.onRetry ? { onRetry: props.onRetry } : {})}
        retrying={props.retrying}
      />
      {log.length > 0 && (
        <details className="setup-log" open={!ready}>
          <summary>
            {ready ? "Setup log" : "Live setup log"} · {log.length} line{log.length === 1 ? "" : "s"}
          </summary>
          <ol className="terminal setup-log-lines" aria-label="Setup log">
            {log.map((line) => (
              <li key={line.id} className={`setup-log-line setup-log-line--${line.tone}`}>
                {line.text}
              </li>
            ))}
          </ol>
        </details>
      )}
    </div>
  );
}
