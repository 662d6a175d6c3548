/**
 * Tells the user that an agent's turn ended while they were looking
 * elsewhere: the tab title gets a count badge ("(2) Fix the build — Umbra")
 * and, when the user allowed it, the browser shows a notification.
 *
 * It watches the query cache, so a turn ending is seen whichever way the
 * news arrives (a socket event on the task page, the task list's refresh).
 * A task's first snapshot only sets its baseline: loading a page never
 * notifies about turns that ended before. The badge clears when the tab
 * becomes visible again.
 */
import { isBusy, TaskStatus } from "@repo/types";
import type { QueryClient } from "@tanstack/react-query";
import { useEffect, useSyncExternalStore } from "react";
import type { Task } from "./api/schemas";

const PREFERENCE_KEY = "umbra.notify";
const BUSY = new Set<string>([TaskStatus.INITIALIZING, TaskStatus.RUNNING]);

let baseTitle = "Umbra";
let unread = 0;

function renderTitle(): void {
  document.title = unread > 0 ? `(${unread}) ${baseTitle}` : baseTitle;
}

/** The page's own title; the badge is put in front of it. */
export function setPageTitle(title: string): void {
  baseTitle = title;
  renderTitle();
}

export function unreadTurns(): number {
  return unread;
}

/** What a turn's end reads like in a notification. */
export function turnEndText(task: Pick<Task, "status" | "title" | "errorMessage">): { title: string; body: string } {
  switch (task.status) {
    case "COMPLETED":
      return { title: `Ready for follow-up: ${task.title}`, body: "The agent finished its turn." };
    case "FAILED":
      return { title: `Failed: ${task.title}`, body: task.errorMessage ?? "The turn failed." };
    case "STOPPED":
      return { title: `Stopped: ${task.title}`, body: task.errorMessage ?? "The turn was stopped." };
    default:
      return { title: task.title, body: `Now ${task.status.toLowerCase()}.` };
  }
}

const listeners = new Set<() => void>();
function notifyListeners(): void {
  for (const listener of listeners) listener();
}

/** Notifications are on: the user asked for them and the browser allows them. */
export function notificationsEnabled(): boolean {
  if (typeof Notification === "undefined") return false;
  try {
    return localStorage.getItem(PREFERENCE_KEY) === "on" && Notification.permission === "granted";
  } catch {
    return false;
  }
}

export async function setNotificationsEnabled(on: boolean): Promise<void> {
  try {
    if (on && typeof Notification !== "undefined" && Notification.permission !== "granted") {
      await Notification.requestPermission();
    }
    localStorage.setItem(PREFERENCE_KEY, on ? "on" : "off");
  } catch {
    // storage or the permission prompt unavailable: notifications stay off
  }
  notifyListeners();
}

export function useNotificationsEnabled(): boolean {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    notificationsEnabled,
    () => false,
  );
}

/** Watches the cache for ended turns while the App is mounted. */
export function useTurnNotifications(client: QueryClient): void {
  useEffect(() => {
    const seen = new Map<string, Task["status"]>();
    const observe = (task: Task) => {
      const before = seen.get(task.id);
      seen.set(task.id, task.status);
      if (before === undefined || !BUSY.has(before) || isBusy(task)) return;
      if (document.visibilityState === "visible" && document.hasFocus()) return;
      unread += 1;
      renderTitle();
      if (notificationsEnabled()) {
        const { title, body } = turnEndText(task);
        try {
          new Notification(title, { body, tag: `umbra-${task.id}` });
        } catch {
          // some browsers only allow notifications from a service worker
        }
      }
    };
    const unsubscribe = client.getQueryCache().subscribe((event) => {
      if (event.type !== "updated" || event.action.type !== "success") return;
      const [root] = event.query.queryKey;
      const data = event.query.state.data;
      if (root === "task" && data) observe(data as Task);
      if (root === "tasks" && Array.isArray(data)) for (const task of data as Task[]) observe(task);
    });
    const clear = () => {
      if (document.visibilityState !== "visible" || unread === 0) return;
      unread = 0;
      renderTitle();
    };
    document.addEventListener("visibilitychange", clear);
    window.addEventListener("focus", clear);
    return () => {
      unsubscribe();
      document.removeEventListener("visibilitychange", clear);
      window.removeEventListener("focus", clear);
    };
  }, [client]);
}
