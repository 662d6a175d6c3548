/**
 * The delivery rows of tasks (`task_deliveries`) and the webhook deliveries
 * already handled (`webhook_deliveries`): every read and write of the two
 * tables. Delivery never writes a task's status fields; those belong to the
 * status store.
 *
 * A failed push is retried from `next_attempt_at`; a retry is claimed with
 * one conditional UPDATE that moves the deadline forward by a lease, so two
 * server processes never push the same task at once and a crashed claimer's
 * retry comes due again when its lease ends.
 */
import { type Db, type TaskDeliveryRow, taskDeliveries, webhookDeliveries } from "@repo/db";
import { and, asc, eq, inArray, isNotNull, lt, lte } from "drizzle-orm";
import type { Clock } from "../utils/clock";

export type NewDelivery = Pick<TaskDeliveryRow, "taskId" | "mode" | "remoteBranch"> &
  Partial<Pick<TaskDeliveryRow, "forge" | "forgeProject" | "closesIssue">>;

export type DeliveryPatch = Partial<Omit<TaskDeliveryRow, "taskId" | "updatedAt">>;

export class DeliveryStore {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
  ) {}

  /** Inserts the task's delivery row; an existing row is kept and returned. */
  async create(input: NewDelivery): Promise<TaskDeliveryRow> {
    const [row] = await this.db
      .insert(taskDeliveries)
      .values({ ...input, state: "pending", updatedAt: this.clock.now() })
      .onConflictDoNothing()
      .returning();
    return row ?? (await this.find(input.taskId))!;
  }

  async find(taskId: string): Promise<TaskDeliveryRow | null> {
    const [row] = await this.db.select().from(taskDeliveries).where(eq(taskDeliveries.taskId, taskId));
    return row ?? null;
  }

  /** The delivery rows of `taskIds`, by task id. */
  async findMany(taskIds: readonly string[]): Promise<Map<string, TaskDeliveryRow>> {
    if (taskIds.length === 0) return new Map();
    const rows = await this.db
      .select()
      .from(taskDeliveries)
      .where(inArray(taskDeliveries.taskId, [...taskIds]));
    return new Map(rows.map((row) => [row.taskId, row]));
  }

  /** The task whose pull request `number` on `forge`/`project` this is. */
  async findByPullRequest(forge: string, project: string, number: number): Promise<TaskDeliveryRow | null> {
    const [row] = await this.db
      .select()
      .from(taskDeliveries)
      .where(
        and(
          eq(taskDeliveries.forge, forge),
          eq(taskDeliveries.forgeProject, project.toLowerCase()),
          eq(taskDeliveries.prNumber, number),
        ),
      );
    return row ?? null;
  }

  /** Writes `patch`; the row as it is now, or null when the task has none. */
  async update(taskId: string, patch: DeliveryPatch): Promise<TaskDeliveryRow | null> {
    const [row] = await this.db
      .update(taskDeliveries)
      .set({ ...patch, updatedAt: this.clock.now() })
      .where(eq(taskDeliveries.taskId, taskId))
      .returning();
    return row ?? null;
  }

  /** Tasks whose retry is due at `now`, earliest first. */
  async dueRetries(now: Date, limit = 20): Promise<TaskDeliveryRow[]> {
    return this.db
      .select()
      .from(taskDeliveries)
      .where(and(isNotNull(taskDeliveries.nextAttemptAt), lte(taskDeliveries.nextAttemptAt, now)))
      .orderBy(asc(taskDeliveries.nextAttemptAt))
      .limit(limit);
  }

  /** The earliest retry deadline, or null when none is pending. */
  async nextRetryAt(): Promise<Date | null> {
    const [row] = await this.db
      .select({ at: taskDeliveries.nextAttemptAt })
      .from(taskDeliveries)
      .where(isNotNull(taskDeliveries.nextAttemptAt))
      .orderBy(asc(taskDeliveries.nextAttemptAt))
      .limit(1);
    return row?.at ?? null;
  }

  /** Claims the due retry of `row` until `leaseUntil`; false when another process claimed or changed it first. */
  async claimRetry(row: TaskDeliveryRow, leaseUntil: Date): Promise<boolean> {
    if (!row.nextAttemptAt) return false;
    const claimed = await this.db
      .update(taskDeliveries)
      .set({ nextAttemptAt: leaseUntil })
      .where(and(eq(taskDeliveries.taskId, row.taskId), eq(taskDeliveries.nextAttemptAt, row.nextAttemptAt)))
      .returning({ taskId: taskDeliveries.taskId });
    return claimed.length === 1;
  }

  /** Ends a claim that is still held (the retry scheduled nothing new). */
  async releaseRetry(taskId: string, leaseUntil: Date): Promise<void> {
    await this.db
      .update(taskDeliveries)
      .set({ nextAttemptAt: null })
      .where(and(eq(taskDeliveries.taskId, taskId), eq(taskDeliveries.nextAttemptAt, leaseUntil)));
  }

  /** Records a webhook delivery; false when it was recorded before (a redelivery). */
  async recordWebhook(source: string, deliveryId: string, event: string): Promise<boolean> {
    const inserted = await this.db
      .insert(webhookDeliveries)
      .values({ source, deliveryId, event, receivedAt: this.clock.now() })
      .onConflictDoNothing()
      .returning({ deliveryId: webhookDeliveries.deliveryId });
    return inserted.length === 1;
  }

  /** Forgets webhook deliveries received before `before`. */
  async pruneWebhooks(before: Date): Promise<void> {
    await this.db.delete(webhookDeliveries).where(lt(webhookDeliveries.receivedAt, before));
  }
}
