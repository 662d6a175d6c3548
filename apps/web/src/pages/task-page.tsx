/**
 * One task: its status line, the initialization stepper, the conversation
 * with live agent output, the follow-up box, Stop / Archive, and the diff.
 */
import { getStepsForMode, isBusy, type MessageDto, TaskStatus } from "@repo/types";
import { useEffect, useMemo, useState } from "react";
import { errorText, useConfig } from "../api";
import { Conversation } from "../components/conversation";
import { DiffView } from "../components/diff-view";
import { FollowUpBox } from "../components/follow-up-box";
import { InitStepper } from "../components/init-stepper";
import { StatusBadge } from "../components/status-badge";
import { StatusLine } from "../components/status-line";
import { buildConversation } from "../conversation";
import { useTaskLive } from "../hooks/use-task-live";
import { Link } from "../router";

function lastUserMessage(messages: readonly MessageDto[]): string | null {
  const users = messages.filter((m) => m.role === "user").sort((a, b) => a.sequence - b.sequence);
  return users.at(-1)?.content ?? null;
}

/** Runs an action, remembering that it is in flight and what went wrong. */
function useAction() {
  const [pending, setPending] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const run = async (name: string, action: () => Promise<void>) => {
    setPending(name);
    setError(null);
    try {
      await action();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setPending(null);
    }
  };
  return { pending, error, run };
}

export function TaskPage({ taskId }: { taskId: string }) {
  const live = useTaskLive(taskId);
  const config = useConfig();
  const actions = useAction();
  const conversation = useMemo(() => buildConversation(live.messages, live.streamed), [live.messages, live.streamed]);
  const { task } = live;
  const title = task?.title;
  useEffect(() => {
    if (title) document.title = `${title} — Umbra`;
  }, [title]);

  if (!task) {
    return (
      <div className="page page--task">
        <Link href="/" className="back-link">
          ← All tasks
        </Link>
        {live.notFound ? (
          <p className="banner banner--warning">This task does not exist (any more).</p>
        ) : live.loadError ? (
          <p className="banner banner--warning" role="alert">
            Could not load the task: {live.loadError}
          </p>
        ) : (
          <p className="muted">Loading task…</p>
        )}
      </div>
    );
  }

  const steps = config?.steps ?? getStepsForMode(task.mode);
  const busy = isBusy(task);
  const retryMessage = lastUserMessage(live.messages);
  const retry = retryMessage === null ? undefined : () => void actions.run("retry", () => live.send(retryMessage));

  return (
    <div className="page page--task">
      <Link href="/" className="back-link">
        ← All tasks
      </Link>
      {!live.connected && (
        <p className="banner banner--warning" role="status" data-testid="offline-banner">
          Live updates paused — reconnecting to the server…
        </p>
      )}
      {live.loadError && live.connected && (
        <p className="banner banner--warning" role="alert">
          {live.loadError}
        </p>
      )}
      <header className="task-header">
        <div className="task-header-title">
          <h1>{task.title}</h1>
          <StatusBadge status={task.status} />
        </div>
        <dl className="task-facts">
          <div>
            <dt>Repository</dt>
            <dd title={task.repoUrl}>{task.repoUrl}</dd>
          </div>
          {task.branch && (
            <div>
              <dt>Branch</dt>
              <dd>
                <code>{task.branch}</code>
                {task.baseBranch && (
                  <>
                    {" "}
                    from <code>{task.baseBranch}</code>
                  </>
                )}
              </dd>
            </div>
          )}
          <div>
            <dt>Mode</dt>
            <dd>{task.mode}</dd>
          </div>
        </dl>
        <div className="task-actions">
          {busy && (
            <button
              type="button"
              className="button button--danger"
              onClick={() => void actions.run("stop", live.stop)}
              disabled={actions.pending !== null}
            >
              {actions.pending === "stop" ? "Stopping…" : "Stop"}
            </button>
          )}
          {task.status !== TaskStatus.ARCHIVED && (
            <button
              type="button"
              className="button"
              onClick={() => void actions.run("archive", live.archive)}
              disabled={actions.pending !== null}
            >
              {actions.pending === "archive" ? "Archiving…" : "Archive"}
            </button>
          )}
        </div>
        {actions.error && (
          <p className="field-error" role="alert">
            {actions.error}
          </p>
        )}
      </header>

      <StatusLine task={task} reinitializing={live.reinitializing} />
      <InitStepper
        steps={steps}
        task={task}
        progress={live.progress}
        reinitializing={live.reinitializing}
        {...(retry ? { onRetry: retry } : {})}
        retrying={actions.pending === "retry"}
      />

      <section className="conversation-section" aria-labelledby="conversation-title">
        <h2 id="conversation-title">Conversation</h2>
        <Conversation items={conversation} />
        <FollowUpBox task={task} onSend={live.send} />
      </section>

      <DiffView diff={live.diff} error={live.diffError} onRefresh={live.refresh} />
    </div>
  );
}
