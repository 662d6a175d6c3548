/**
 * The task header's actions: Stop while busy; Archive (asking first when the
 * agent is still working, because archiving stops it); Retry as a new task
 * with the message and repository editable; Delete, always asking first.
 */
import { isBusy, type MessageDto, TaskStatus } from "@repo/types";
import { useState } from "react";
import { errorText } from "../api";
import type { Task } from "../api/schemas";
import { ConfirmDialog } from "./confirm-dialog";
import { NewTaskForm } from "./new-task-form";

type Pending = "stop" | "archive" | "delete" | null;
type Asking = "archive" | "delete" | "retry" | null;

export interface TaskActionsProps {
  task: Task;
  messages: readonly MessageDto[];
  stop: () => Promise<void>;
  archive: () => Promise<void>;
  remove: () => Promise<void>;
  onRetried: (task: Task) => void;
}

function lastUserMessage(messages: readonly MessageDto[]): string {
  const users = messages.filter((m) => m.role === "user").sort((a, b) => a.sequence - b.sequence);
  return users.at(-1)?.content ?? "";
}

export function TaskActions({ task, messages, stop, archive, remove, onRetried }: TaskActionsProps) {
  const [pending, setPending] = useState<Pending>(null);
  const [asking, setAsking] = useState<Asking>(null);
  const [error, setError] = useState<string | null>(null);
  const busy = isBusy(task);

  const run = async (name: Exclude<Pending, null>, action: () => Promise<void>) => {
    setPending(name);
    setError(null);
    try {
      await action();
      setAsking(null);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setPending(null);
    }
  };

  return (
    <>
      <div className="task-actions">
        {busy && (
          <button
            type="button"
            className="button button--danger"
            onClick={() => void run("stop", stop)}
            disabled={pending !== null}
          >
            {pending === "stop" ? "Stopping…" : "Stop"}
          </button>
        )}
        {task.status !== TaskStatus.ARCHIVED && (
          <button
            type="button"
            className="button"
            onClick={() => (busy ? setAsking("archive") : void run("archive", archive))}
            disabled={pending !== null}
          >
            {pending === "archive" && asking === null ? "Archiving…" : "Archive"}
          </button>
        )}
        {!busy && (
          <button type="button" className="button" onClick={() => setAsking("retry")} disabled={pending !== null}>
            Retry…
          </button>
        )}
        <button
          type="button"
          className="button button--ghost button--danger-text"
          onClick={() => setAsking("delete")}
          disabled={pending !== null}
        >
          Delete
        </button>
      </div>
      {error && asking === null && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      {asking === "archive" && (
        <ConfirmDialog
          title="Archive a running task?"
          confirmLabel="Stop and archive"
          busyLabel="Archiving…"
          busy={pending === "archive"}
          error={error}
          danger
          onConfirm={() => void run("archive", archive)}
          onCancel={() => setAsking(null)}
        >
          <p>
            The agent is {task.status === TaskStatus.INITIALIZING ? "being set up" : "working"}. Archiving stops it now;
            what it has done so far is saved on <code>{task.branch ?? "the task branch"}</code> and the workspace is
            removed.
          </p>
        </ConfirmDialog>
      )}
      {asking === "delete" && (
        <ConfirmDialog
          title="Delete this task?"
          confirmLabel="Delete task"
          busyLabel="Deleting…"
          busy={pending === "delete"}
          error={error}
          danger
          onConfirm={() => void run("delete", remove)}
          onCancel={() => setAsking(null)}
        >
          <p>
            “{task.title}” is removed with its conversation{busy ? ", and the agent is stopped" : ""}. This cannot be
            undone.
          </p>
        </ConfirmDialog>
      )}
      {asking === "retry" && (
        <div className="overlay">
          <div className="retry-dialog" role="dialog" aria-modal="true" aria-label="Retry as a new task">
            <NewTaskForm
              heading="Retry as a new task"
              submitLabel="Create task"
              initial={{
                repoUrl: task.repoUrl,
                baseBranch: task.baseBranch ?? "",
                message: lastUserMessage(messages),
                agent: task.agent ?? "",
                model: task.model ?? "",
              }}
              onCreated={(created) => {
                setAsking(null);
                onRetried(created);
              }}
              onCancel={() => setAsking(null)}
            />
          </div>
        </div>
      )}
    </>
  );
}
