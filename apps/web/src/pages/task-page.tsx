/**
 * One task, laid out for review: the header (title, status, repository,
 * branch, agent, usage, actions) and the status line on top; below, the
 * conversation with the follow-up box on one side and the work pane's tabs
 * (Changes, Files, Terminal, Setup) on the other. On a narrow screen the two
 * sides stack.
 */
import { getStepsForMode, isBusy, type MessageDto } from "@repo/types";
import { useQueryClient } from "@tanstack/react-query";
import { lazy, Suspense, useEffect, useMemo, useState } from "react";
import { api, errorText, useConfig } from "../api";
import { forgetTask } from "../api/queries";
import type { Task, Usage } from "../api/schemas";
import { Conversation } from "../components/conversation";
import { DeliveryPanel } from "../components/delivery-panel";
import { FilesPanel } from "../components/files-panel";
import { FollowUpBox } from "../components/follow-up-box";
import { SetupPanel } from "../components/setup-panel";
import { StatusBadge } from "../components/status-badge";
import { StatusLine } from "../components/status-line";
import { TaskActions } from "../components/task-actions";
import { TerminalPanel } from "../components/terminal-panel";
import { type Tab, WorkspaceTabs } from "../components/workspace-tabs";
import { buildConversation } from "../conversation";
import { type TaskLive, useTaskLive } from "../hooks/use-task-live";
import { Link, navigate, taskPath } from "../router";
import { setPageTitle } from "../turn-notifications";
import { buildWorkRows } from "../work";

const ChangesPanel = lazy(() => import("../components/changes/changes-panel"));

function lastUserMessage(messages: readonly MessageDto[]): string | null {
  const users = messages.filter((m) => m.role === "user").sort((a, b) => a.sequence - b.sequence);
  return users.at(-1)?.content ?? null;
}

function compact(n: number): string {
  return n >= 1000 ? `${(n / 1000).toFixed(n >= 10_000 ? 0 : 1)}k` : String(n);
}

export function usageText(usage: Usage): string {
  const cost = usage.costUsd != null ? ` · $${usage.costUsd.toFixed(usage.costUsd < 1 ? 3 : 2)}` : "";
  return `${compact(usage.inputTokens)} in · ${compact(usage.outputTokens)} out${cost}`;
}

async function downloadPatch(task: Task): Promise<void> {
  const text = await api.getPatch(task.id);
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = `${(task.branch ?? task.id).replace(/[^\w.-]+/g, "-")}.patch`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function ChangesTab({ live, task }: { live: TaskLive; task: Task }) {
  const busy = isBusy(task);
  return (
    <section className="changes-tab" aria-label="Changes" data-testid="diff">
      <div className="section-header">
        {live.diff?.branch ? (
          <span className="muted">
            <code>{live.diff.branch}</code>
            {live.diff.baseCommitSha && (
              <>
                {" "}
                since <code>{live.diff.baseCommitSha.slice(0, 8)}</code>
              </>
            )}
          </span>
        ) : (
          <span />
        )}
        <button type="button" className="button button--small" onClick={live.refresh} disabled={live.diffLoading}>
          {live.diffLoading ? "Refreshing…" : "Refresh"}
        </button>
      </div>
      <DeliveryPanel
        delivery={task.delivery}
        busy={busy}
        onOpenPullRequest={live.openPullRequest}
        onDownloadPatch={() => downloadPatch(task)}
      />
      {busy && live.diff && (
        <p className="hint">The agent is working: its changes are saved here when the turn ends.</p>
      )}
      {!live.diff && !live.diffError && <p className="muted">Loading changes…</p>}
      {live.diffError && !live.diff && <p className="muted">The diff is not available: {live.diffError}</p>}
      {live.diff && live.diff.files.length === 0 && <p className="empty">No changes yet.</p>}
      {live.diff && live.diff.files.length > 0 && (
        <Suspense fallback={<p className="muted">Loading the diff viewer…</p>}>
          <ChangesPanel diff={live.diff} />
        </Suspense>
      )}
    </section>
  );
}

export function TaskPage({ taskId }: { taskId: string }) {
  const live = useTaskLive(taskId);
  const config = useConfig();
  const client = useQueryClient();
  const [retrying, setRetrying] = useState(false);
  const [retryError, setRetryError] = useState<string | null>(null);
  const conversation = useMemo(() => buildConversation(live.messages, live.streamed), [live.messages, live.streamed]);
  const rows = useMemo(() => buildWorkRows(conversation), [conversation]);
  const { task } = live;
  const title = task?.title;
  useEffect(() => {
    if (title) setPageTitle(`${title} — Umbra`);
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
  const retryMessage = lastUserMessage(live.messages);
  const retry =
    retryMessage === null
      ? undefined
      : async () => {
          setRetrying(true);
          setRetryError(null);
          try {
            await live.send(retryMessage);
          } catch (error) {
            setRetryError(errorText(error));
          } finally {
            setRetrying(false);
          }
        };
  const commandCount = rows.filter(
    (r) => (r.kind === "tool" && r.toolKind === "command") || r.kind === "output",
  ).length;
  const defaultTab: Tab = task.status === "INITIALIZING" && !live.reinitializing ? "setup" : "changes";

  const remove = async () => {
    await live.remove();
    navigate("/");
    forgetTask(client, taskId);
  };

  return (
    <div className="page page--task">
      <Link href="/" className="back-link">
        ← All tasks
      </Link>
      {live.connection === "offline" && (
        <p className="banner banner--warning" role="status" data-testid="offline-banner">
          Live updates paused — reconnecting to the server…
        </p>
      )}
      {live.loadError && live.connection === "connected" && (
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
          {task.agent && (
            <div>
              <dt>Agent</dt>
              <dd>{task.model ? `${task.agent} · ${task.model}` : task.agent}</dd>
            </div>
          )}
          {task.usage && (
            <div>
              <dt>Usage</dt>
              <dd data-testid="usage">{usageText(task.usage)}</dd>
            </div>
          )}
        </dl>
        <TaskActions
          task={task}
          messages={live.messages}
          stop={live.stop}
          archive={live.archive}
          remove={remove}
          onRetried={(created) => navigate(taskPath(created.id))}
        />
      </header>

      <StatusLine task={task} reinitializing={live.reinitializing} />

      <div className="workspace-split">
        <section className="pane pane--chat" aria-labelledby="conversation-title">
          <h2 id="conversation-title" className="visually-hidden">
            Conversation
          </h2>
          <Conversation items={conversation} />
          <FollowUpBox task={task} onSend={live.send} />
        </section>
        <section className="pane pane--work" aria-label="Workspace">
          <WorkspaceTabs
            defaultTab={defaultTab}
            badges={{
              ...(live.diff && live.diff.files.length > 0 ? { changes: String(live.diff.files.length) } : {}),
              ...(commandCount > 0 ? { terminal: String(commandCount) } : {}),
              ...(task.status === "INITIALIZING" ? { setup: "…" } : {}),
            }}
            render={(tab) => {
              switch (tab) {
                case "changes":
                  return <ChangesTab live={live} task={task} />;
                case "files":
                  return <FilesPanel taskId={task.id} hasBranch={Boolean(task.branch && task.baseCommitSha)} />;
                case "terminal":
                  return <TerminalPanel rows={rows} />;
                case "setup":
                  return (
                    <SetupPanel
                      steps={steps}
                      task={task}
                      progress={live.progress}
                      log={live.initLog}
                      reinitializing={live.reinitializing}
                      {...(retry ? { onRetry: () => void retry() } : {})}
                      retrying={retrying}
                    />
                  );
              }
            }}
          />
          {retryError && (
            <p className="field-error" role="alert">
              {retryError}
            </p>
          )}
        </section>
      </div>
    </div>
  );
}
