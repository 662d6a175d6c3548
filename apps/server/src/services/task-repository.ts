/**
 * Reading and deleting tasks: the one place that loads a task row by id or
 * lists them, used by the routes, the socket, the engine and the services.
 * Reads step over a connection the database dropped (see db-retry.ts).
 * Writes to the lifecycle fields never happen here: they are moves of the
 * status store (utils/task-status.ts).
 */
import { type Db, type TaskRow, tasks } from "@repo/db";
import { desc, eq } from "drizzle-orm";
import { NotFoundError } from "../errors";
import { retryRead } from "../utils/db-retry";

export class TaskRepository {
  constructor(private readonly db: Db) {}

  /** The task, or NotFoundError. */
  async get(taskId: string): Promise<TaskRow> {
    const task = await this.find(taskId);
    if (!task) throw new NotFoundError("task", taskId);
    return task;
  }

  /** The task, or null when there is none. */
  async find(taskId: string): Promise<TaskRow | null> {
    const [row] = await retryRead(() => this.db.select().from(tasks).where(eq(tasks.id, taskId)));
    return row ?? null;
  }

  /** Every task, newest first. */
  list(): Promise<TaskRow[]> {
    return retryRead(() => this.db.select().from(tasks).orderBy(desc(tasks.createdAt), desc(tasks.id)));
  }

  /** Deletes the task row; its messages, sessions and history go with it (cascade). */
  async delete(taskId: string): Promise<void> {
    await this.db.delete(tasks).where(eq(tasks.id, taskId));
  }
}
