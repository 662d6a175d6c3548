/**
 * The task list: every task with its status, repository, title and age,
 * filterable by status, plus the new-task form. It stays live by refetching
 * every few seconds and whenever the window regains focus.
 */
import { isInitStep, STEP_DISPLAY_NAMES, TASK_STATUSES, type TaskDto, type TaskStatus } from "@repo/types";
import { useCallback, useEffect, useId, useState } from "react";
import { api, errorText } from "../api";
import { NewTaskForm } from "../components/new-task-form";
import { STATUS_LABELS, StatusBadge } from "../components/status-badge";
import { useNow, useOnFocus } from "../hooks/use-now";
import { formatAge } from "../relative-time";
import { Link, navigate, taskPath } from "../router";

const REFRESH_MS = 3_000;

type Filter = TaskStatus | "ALL";

function repoName(repoUrl: string): string {
  const trimmed = repoUrl.replace(/\/+$/, "").replace(/\.git$/, "");
  return trimmed.split(/[/:]/).filter(Boolean).slice(-2).join("/") || repoUrl;
}

function TaskRow({ task, now }: { task: TaskDto; now: number }) {
  const step =
    task.status === "INITIALIZING" && isInitStep(task.initStatus) ? STEP_DISPLAY_NAMES[task.initStatus] : null;
  return (
    <li className="task-row" data-task-id={task.id}>
      <StatusBadge status={task.status} />
      <div className="task-row-main">
        <Link href={taskPath(task.id)} className="task-row-title">
          {task.title}
        </Link>
        <div className="task-row-meta">
          <span className="repo" title={task.repoUrl}>
            {repoName(task.repoUrl)}
          </span>
          {task.branch && <code className="branch">{task.branch}</code>}
          {step && <span className="muted">{step}…</span>}
        </div>
      </div>
      <time className="task-row-age" dateTime={task.createdAt} title={new Date(task.createdAt).toLocaleString()}>
        {formatAge(task.createdAt, now)}
      </time>
    </li>
  );
}

export function TaskListPage() {
  const [tasks, setTasks] = useState<TaskDto[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [filter, setFilter] = useState<Filter>("ALL");
  const now = useNow(30_000);
  const filterId = useId();

  const load = useCallback(async () => {
    try {
      setTasks(await api.listTasks());
      setError(null);
    } catch (err) {
      setError(errorText(err));
    }
  }, []);

  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), REFRESH_MS);
    return () => clearInterval(timer);
  }, [load]);
  useOnFocus(load);

  const counts = new Map<TaskStatus, number>();
  for (const task of tasks ?? []) counts.set(task.status, (counts.get(task.status) ?? 0) + 1);
  const shown = (tasks ?? []).filter((task) => filter === "ALL" || task.status === filter);

  return (
    <div className="page page--tasks">
      <NewTaskForm onCreated={(task) => navigate(taskPath(task.id))} />
      <section className="task-list" aria-labelledby={`${filterId}-heading`}>
        <div className="section-header">
          <h2 id={`${filterId}-heading`}>Tasks</h2>
          <div className="filter">
            <label htmlFor={filterId}>Filter by status</label>
            <select id={filterId} value={filter} onChange={(event) => setFilter(event.target.value as Filter)}>
              <option value="ALL">All ({tasks?.length ?? 0})</option>
              {TASK_STATUSES.map((status) => (
                <option key={status} value={status}>
                  {STATUS_LABELS[status]} ({counts.get(status) ?? 0})
                </option>
              ))}
            </select>
          </div>
        </div>
        {error && (
          <p className="banner banner--warning" role="alert">
            Could not load tasks: {error}
          </p>
        )}
        {tasks === null && !error && <p className="muted">Loading tasks…</p>}
        {tasks !== null && shown.length === 0 && (
          <p className="empty">{filter === "ALL" ? "No tasks yet. Create one above." : "No tasks with this status."}</p>
        )}
        {shown.length > 0 && (
          <ul className="task-rows">
            {shown.map((task) => (
              <TaskRow key={task.id} task={task} now={now} />
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
