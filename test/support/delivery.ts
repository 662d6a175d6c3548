/**
 * Helpers for delivery tests: tasks through the API, waits on a task's
 * delivery and turns, bare copies of repositories, and an agent command
 * that holds its turn until the test lets it go.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { taskDeliveries } from "@repo/db";
import type { DeliveryDto, TaskDto } from "@repo/types";
import { eq } from "drizzle-orm";
import { git, tempDir } from "./git";
import { eventually, readTask } from "./lifecycle";
import type { TestServer } from "./server";

export type TaskBody = { task: TaskDto };

export async function createTask(t: TestServer, body: Record<string, unknown>): Promise<TaskDto> {
  const created = await t.api<TaskBody>("POST", "/api/tasks", body);
  if (created.status !== 201) throw new Error(`task not created: ${created.status} ${JSON.stringify(created.body)}`);
  return created.body.task;
}

export async function getTask(t: TestServer, id: string): Promise<TaskDto> {
  return (await t.api<TaskBody>("GET", `/api/tasks/${id}`)).body.task;
}

/** Waits until the task's delivery (as the API shows it) passes `test`. */
export function deliveryOf(
  t: TestServer,
  id: string,
  test: (delivery: DeliveryDto) => boolean,
  timeoutMs?: number,
): Promise<DeliveryDto> {
  return eventually(async () => {
    const { delivery } = await getTask(t, id);
    return test(delivery) ? delivery : undefined;
  }, timeoutMs);
}

/** Waits until the task rests with `status` and no turn of it runs here. */
export async function turnEnded(t: TestServer, id: string, status = "COMPLETED"): Promise<void> {
  await eventually(async () => (await readTask(t, id)).status === status && !t.server.turns.isRunning(id));
}

export async function followUp(t: TestServer, id: string, message: string): Promise<TaskDto> {
  const answer = await t.api<TaskBody>("POST", `/api/tasks/${id}/messages`, { message });
  if (answer.status !== 202) throw new Error(`follow-up refused: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body.task;
}

/** A bare clone of `repo`, as a remote to push to. */
export function bareCopy(repo: string): string {
  const dir = join(tempDir("umbra-remote-"), "remote.git");
  git(tempDir(), "clone", "--quiet", "--bare", repo, dir);
  return dir;
}

/** The commit `ref` names in `repo`, or null. */
export function refIn(repo: string, ref: string): string | null {
  try {
    return git(repo, "rev-parse", "--verify", "--quiet", ref);
  } catch {
    return null;
  }
}

/**
 * Someone else's commit on `branch` of `remote`: clones it, writes `files`,
 * commits and pushes (fast-forward). Returns the new commit.
 */
export function pushAsSomeoneElse(
  remote: string,
  branch: string,
  files: Record<string, string>,
  message: string,
): string {
  const clone = tempDir("umbra-reviewer-");
  git(clone, "clone", "--quiet", "--branch", branch, remote, ".");
  for (const [path, content] of Object.entries(files)) writeFileSync(join(clone, path), content);
  git(clone, "add", "-A");
  git(clone, "commit", "--quiet", "-m", message);
  git(clone, "push", "--quiet", "origin", `HEAD:refs/heads/${branch}`);
  return git(clone, "rev-parse", "HEAD");
}

/** A shell command for the agent that waits until `open()` is called, then runs `then`. */
export function heldCommand(then: string): { command: string; open(): void } {
  const file = join(tempDir("umbra-go-"), "go");
  return {
    command: `while [ ! -e '${file}' ]; do sleep 0.02; done; ${then}`,
    open: () => {
      if (!existsSync(file)) writeFileSync(file, "");
    },
  };
}

/** The task's delivery row as stored (attempts and retry deadline included). */
export async function deliveryRow(t: TestServer, id: string) {
  const [row] = await t.server.database.db.select().from(taskDeliveries).where(eq(taskDeliveries.taskId, id));
  if (!row) throw new Error(`task ${id} has no delivery row`);
  return row;
}

/**
 * Like heldCommand, for an agent inside a sandbox, which sees nothing of the
 * host but its workspace: it waits for a file in the workspace's `.git`
 * (never committed), which `open` creates from the host side.
 */
export function heldInWorkspace(then: string): { command: string; open(hostWorkspace: string): void } {
  return {
    command: `while [ ! -e .git/umbra-go ]; do sleep 0.02; done; ${then}`,
    open: (hostWorkspace) => writeFileSync(join(hostWorkspace, ".git", "umbra-go"), ""),
  };
}
