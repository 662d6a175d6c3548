/**
 * The task list: every task with its status (an archived task also says how
 * its last run ended), repository, branch, agent and age; a search box and a
 * status filter whose values live in the URL (`?q=…&status=…`), so a
 * filtered list survives a reload and can be shared; and the new-task form.
 * The list comes from the query cache, so coming back from a task shows it
 * at once while it refreshes.
 */
import { isInitStep, lastOutcome, STEP_DISPLAY_NAMES, statusWords, TASK_STATUSES, type TaskStatus } from "@repo/types";
import { useId, useMemo } from "react";
import { errorText } from "../api";
import { useTasksQuery } from "../api/queries";
import type { Task } from "../api/schemas";
import { NewTaskForm } from "../components/new-task-form";
import { STATUS_LABELS, StatusBadge } from "../components/status-badge";
import { useNow } from "../hooks/use-now";
import { formatAge } from "../relative-time";
import { repoName } from "../repositories";
import { Link, navigate, setSearchParams, taskPath, useSearchParam } from "../router";

type Filter = TaskStatus | "ALL";

function isFilter(value: string | null): value is TaskStatus {
  return value !== null && (TASK_STATUSES as readonly string[]).includes(value);
}

/** Tasks whose title, repository, branch, agent or id contain every word of `query` (case-insensitive). */
export function searchTasks<T extends Task>(tasks: readonly T[], query: string): T[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return [...tasks];
  return tasks.filter((task) => {
    const text = [task.title, task.repoUrl, task.branch, task.baseBranch, task.agent, task.model, task.id]
      .filter(Boolean)
      .join(" ")
      .toLowerCase();
    return words.every((word) => text.includes(word));
  });
}

function TaskRow({ task, now }: { task: Task; now: number }) {
  const step =
    task.status === "INITIALIZING" && isInitStep(task.initStatus) ? STEP_DISPLAY_NAMES[task.initStatus] : null;
  const outcome = task.status === "ARCHIVED" ? lastOutcome(task) : null;
  return (
    <li className="task-row" data-task-id={task.id}>
      <span className="task-row-status" title={task.status === "ARCHIVED" ? statusWords(task) : undefined}>
        {outcome && (
          <span className={`outcome outcome--${outcome.toLowerCase()}`} data-testid="outcome">
            {STATUS_LABELS[outcome]} ·{" "}
          </span>
        )}
        <StatusBadge status={task.status} />
      </span>
      <div className="task-row-main">
        <Link href={taskPath(task.id)} className="task-row-title">
          {task.title}
        </Link>
        <div className="task-row-meta">
          <span className="repo" title={task.repoUrl}>
            {repoName(task.repoUrl)}
          </span>
          {task.branch && <code className="branch">{task.branch}</code>}
          {task.agent && <span className="muted">{task.model ? `${task.agent} · ${task.model}` : task.agent}</span>}
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
  const tasksQuery = useTasksQuery();
  const tasks = tasksQuery.data ?? null;
  const error = tasksQuery.error && !tasksQuery.data ? errorText(tasksQuery.error) : null;
  const statusParam = useSearchParam("status");
  const query = useSearchParam("q") ?? "";
  const filter: Filter = isFilter(statusParam) ? statusParam : "ALL";
  const now = useNow(30_000);
  const id = useId();

  const searched = useMemo(() => searchTasks(tasks ?? [], query), [tasks, query]);
  const counts = new Map<TaskStatus, number>();
  for (const task of searched) counts.set(task.status, (counts.get(task.status) ?? 0) + 1);
  const shown = searched.filter((task) => filter === "ALL" || task.status === filter);
  const narrowed = filter !== "ALL" || query.trim() !== "";

  return (
    <div className="page page--tasks">
      <NewTaskForm onCreated={(task) => navigate(taskPath(task.id))} recentTasks={tasks ?? []} />
      <section className="task-list" aria-labelledby={`${id}-heading`}>
        <div className="section-header">
          <h2 id={`${id}-heading`}>Tasks</h2>
          <search className="list-controls">
            <label htmlFor={`${id}-search`} className="visually-hidden">
              Search tasks
            </label>
            <input
              id={`${id}-search`}
              type="search"
              placeholder="Search tasks…"
              value={query}
              onChange={(event) => setSearchParams({ q: event.target.value })}
            />
            <div className="filter">
              <label htmlFor={`${id}-filter`}>Filter by status</label>
              <select
                id={`${id}-filter`}
                value={filter}
                onChange={(event) =>
                  setSearchParams({ status: event.target.value === "ALL" ? null : event.target.value })
                }
              >
                <option value="ALL">All ({searched.length})</option>
                {TASK_STATUSES.map((status) => (
                  <option key={status} value={status}>
                    {STATUS_LABELS[status]} ({counts.get(status) ?? 0})
                  </option>
                ))}
              </select>
            </div>
          </search>
        </div>
        {error && (
          <p className="banner banner--warning" role="alert">
            Could not load tasks: {error}
          </p>
        )}
        {tasks === null && !error && <p className="muted">Loading tasks…</p>}
        {tasks !== null && shown.length === 0 && (
          <p className="empty">
            {!narrowed ? "No tasks yet. Create one above." : "No tasks match this search and filter."}
            {narrowed && (
              <>
                {" "}
                <button
                  type="button"
                  className="link-button"
                  onClick={() => setSearchParams({ q: null, status: null })}
                >
                  Show all tasks
                </button>
              </>
            )}
          </p>
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
