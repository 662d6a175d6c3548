/**
 * What each agent turn leaves besides messages and commits: a row in `turns`
 * (agent, model, outcome, usage, start and end), the task's usage sums, and
 * the agent CLI's session for the next turn to resume.
 *
 * Invariants:
 * - The turn row, the task's sums and the session are written in one
 *   transaction, so the task's usage is always the sum of its turns.
 * - A turn whose agent returned no session keeps the task's previous one
 *   (a CLI that failed before it started has nothing newer to resume).
 * - Cost stays null on the task until a turn reports one; token counts of a
 *   turn whose agent does not know them are null in its row and add nothing.
 * - None of these fields is part of the status machine; the write bumps the
 *   task's version like every write to the row.
 */
import { randomUUID } from "node:crypto";
import { type Db, tasks, turns } from "@repo/db";
import type { AgentKind } from "@repo/types";
import { eq, sql } from "drizzle-orm";
import type { AgentSession, TurnUsage } from "../agent/types";
import { DB_RETRY_DEADLINE_MS, retryTransient } from "../utils/db-retry";
import type { TurnOutcome } from "../utils/task-moves";

export interface EndedTurn {
  taskId: string;
  agent: AgentKind;
  model: string | null;
  outcome: TurnOutcome;
  usage?: TurnUsage;
  session?: AgentSession;
  startedAt: Date;
  endedAt: Date;
}

export class TurnRecords {
  constructor(
    private readonly db: Db,
    /** How long the write is retried while the database connection is lost, in ms. Default 60000. */
    private readonly retryDeadlineMs = DB_RETRY_DEADLINE_MS,
  ) {}

  /** Records one ended turn and adds its usage to the task. */
  async record(turn: EndedTurn): Promise<void> {
    const usage = turn.usage;
    await retryTransient(
      () =>
        this.db.transaction(async (tx) => {
          await tx.insert(turns).values({
            id: randomUUID(),
            taskId: turn.taskId,
            agent: turn.agent,
            model: turn.model,
            outcome: turn.outcome,
            inputTokens: usage?.inputTokens ?? null,
            outputTokens: usage?.outputTokens ?? null,
            costUsd: usage?.costUsd ?? null,
            startedAt: turn.startedAt,
            endedAt: turn.endedAt,
          });
          const cost = usage?.costUsd ?? null;
          await tx
            .update(tasks)
            .set({
              inputTokens: sql`${tasks.inputTokens} + ${usage?.inputTokens ?? 0}`,
              outputTokens: sql`${tasks.outputTokens} + ${usage?.outputTokens ?? 0}`,
              ...(cost === null ? {} : { costUsd: sql`coalesce(${tasks.costUsd}, 0) + ${cost}` }),
              ...(turn.session ? { agentSession: turn.session } : {}),
              version: sql`${tasks.version} + 1`,
              updatedAt: turn.endedAt,
            })
            .where(eq(tasks.id, turn.taskId));
        }),
      { deadlineMs: this.retryDeadlineMs },
    );
  }
}
