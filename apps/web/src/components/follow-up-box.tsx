/**
 * The follow-up box: a message to the agent, sent with the button or
 * Ctrl/Cmd+Enter. While the task is busy (initializing or running) the server
 * would refuse a follow-up, so the box is disabled and says why.
 */
import { FollowUpBodySchema, InitStatus, isBusy, type TaskDto, TaskStatus } from "@repo/types";
import { type FormEvent, type KeyboardEvent, useId, useState } from "react";
import { errorText } from "../api";

type FollowUpTask = Pick<TaskDto, "status" | "initStatus">;

/** Why a follow-up cannot be sent now, or null when it can. */
export function followUpBlockReason(task: FollowUpTask): string | null {
  if (!isBusy(task)) return null;
  return task.status === TaskStatus.INITIALIZING
    ? "The workspace is being prepared. You can send a follow-up once the agent's turn is over, or stop the task."
    : "The agent is working. You can send a follow-up when its turn is over, or stop it.";
}

function sendHint(task: FollowUpTask): string {
  if (task.initStatus === InitStatus.INACTIVE) return "Sending re-creates the workspace first.";
  return "Ctrl+Enter or ⌘+Enter sends.";
}

export function FollowUpBox({ task, onSend }: { task: FollowUpTask; onSend: (message: string) => Promise<void> }) {
  const [message, setMessage] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [sending, setSending] = useState(false);
  const id = useId();
  const reason = followUpBlockReason(task);
  const disabled = reason !== null || sending;

  const submit = async () => {
    if (disabled) return;
    const parsed = FollowUpBodySchema.safeParse({ message });
    if (!parsed.success) {
      setError(parsed.error.issues[0]?.message ?? "The message is not valid");
      return;
    }
    setSending(true);
    setError(null);
    try {
      await onSend(parsed.data.message);
      setMessage("");
    } catch (err) {
      setError(errorText(err));
    } finally {
      setSending(false);
    }
  };

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    void submit();
  };
  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      void submit();
    }
  };

  const describedBy = [reason ? `${id}-reason` : `${id}-hint`, error ? `${id}-error` : null].filter(Boolean).join(" ");
  return (
    <form className="follow-up" onSubmit={onSubmit} aria-label="Follow-up">
      <label htmlFor={`${id}-message`}>Follow-up message</label>
      <textarea
        id={`${id}-message`}
        name="message"
        rows={3}
        value={message}
        onChange={(event) => setMessage(event.target.value)}
        onKeyDown={onKeyDown}
        disabled={disabled}
        aria-describedby={describedBy}
        aria-invalid={error ? true : undefined}
        placeholder={reason ? "" : "Ask the agent to continue…"}
      />
      <div className="follow-up-footer">
        {reason ? (
          <p id={`${id}-reason`} className="follow-up-reason" data-testid="follow-up-reason">
            {reason}
          </p>
        ) : (
          <p id={`${id}-hint`} className="hint">
            {sendHint(task)}
          </p>
        )}
        <button type="submit" className="button button--primary" disabled={disabled}>
          {sending ? "Sending…" : "Send"}
        </button>
      </div>
      {error && (
        <p id={`${id}-error`} className="field-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
