/**
 * Recent repositories for the new-task form: the ones this browser created
 * tasks for (kept in localStorage, newest first) merged with the ones the
 * task list shows, so a developer rarely types a repository twice.
 */
const STORAGE_KEY = "umbra.recentRepositories";
/** How many recent repositories are kept and offered. */
export const RECENT_LIMIT = 8;

/** "owner/name" of a repository URL or path, for display. */
export function repoName(repoUrl: string): string {
  const trimmed = repoUrl.replace(/\/+$/, "").replace(/\.git$/, "");
  return trimmed.split(/[/:]/).filter(Boolean).slice(-2).join("/") || repoUrl;
}

function readStored(): string[] {
  try {
    const parsed: unknown = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "[]");
    return Array.isArray(parsed) ? parsed.filter((item): item is string => typeof item === "string") : [];
  } catch {
    return [];
  }
}

/** Remembers a repository a task was just created for. */
export function rememberRepository(repoUrl: string): void {
  const next = [repoUrl, ...readStored().filter((item) => item !== repoUrl)].slice(0, RECENT_LIMIT);
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(next));
  } catch {
    // storage unavailable: the list still offers the task list's repositories
  }
}

/** Recent repositories: remembered ones first, then those of the given tasks (newest first), without repeats. */
export function recentRepositories(tasks: readonly { repoUrl: string; createdAt: string }[]): string[] {
  const fromTasks = [...tasks].sort((a, b) => b.createdAt.localeCompare(a.createdAt)).map((task) => task.repoUrl);
  return [...new Set([...readStored(), ...fromTasks])].slice(0, RECENT_LIMIT);
}
