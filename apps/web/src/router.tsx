/**
 * A small History API router: two routes, `/` and `/tasks/<id>`. Links are
 * real anchors (open-in-new-tab keeps working); plain left clicks are turned
 * into pushState navigations. View state that should survive a reload or a
 * shared link (the list's search and filter, the task page's tab) lives in
 * the query string, read with useSearchParam and written with setSearchParams.
 */
import { type AnchorHTMLAttributes, type MouseEvent, useSyncExternalStore } from "react";

export type Route = { name: "tasks" } | { name: "task"; taskId: string } | { name: "not-found" };

const listeners = new Set<() => void>();

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  window.addEventListener("popstate", listener);
  return () => {
    listeners.delete(listener);
    window.removeEventListener("popstate", listener);
  };
}

function notify(): void {
  for (const listener of listeners) listener();
}

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (options.replace) window.history.replaceState(null, "", to);
  else window.history.pushState(null, "", to);
  notify();
  window.scrollTo?.(0, 0);
}

/**
 * Sets (or, with null or "", removes) query-string parameters of the current
 * page without a new history entry and without scrolling.
 */
export function setSearchParams(changes: Record<string, string | null>): void {
  const params = new URLSearchParams(window.location.search);
  for (const [name, value] of Object.entries(changes)) {
    if (value === null || value === "") params.delete(name);
    else params.set(name, value);
  }
  const query = params.toString();
  window.history.replaceState(null, "", `${window.location.pathname}${query ? `?${query}` : ""}`);
  notify();
}

/** One query-string parameter of the current page, or null. */
export function useSearchParam(name: string): string | null {
  const search = useSyncExternalStore(
    subscribe,
    () => window.location.search,
    () => "",
  );
  return new URLSearchParams(search).get(name);
}

export function matchRoute(pathname: string): Route {
  const path = pathname.replace(/\/+$/, "") || "/";
  if (path === "/") return { name: "tasks" };
  const task = /^\/tasks\/([^/]+)$/.exec(path);
  if (task?.[1]) return { name: "task", taskId: decodeURIComponent(task[1]) };
  return { name: "not-found" };
}

export function taskPath(taskId: string): string {
  return `/tasks/${encodeURIComponent(taskId)}`;
}

export function useRoute(): Route {
  const pathname = useSyncExternalStore(
    subscribe,
    () => window.location.pathname,
    () => "/",
  );
  return matchRoute(pathname);
}

export function Link({ href, onClick, ...props }: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  const handleClick = (event: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(event);
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    if (props.target && props.target !== "_self") return;
    event.preventDefault();
    navigate(href);
  };
  return <a href={href} onClick={handleClick} {...props} />;
}
