/**
 * Helpers for lifecycle tests: a workspace manager whose first step can be
 * held so a client joins the task's room at a known point, and small readers.
 */
import { type TaskRow, tasks, vmSessions } from "@repo/db";
import { eq } from "drizzle-orm";
import type { WorkspaceManager } from "../../apps/server/src/execution/types";
import type { TestServer } from "./server";

export interface Gate {
  /** Resolves when the first provisioning step is about to run (its initStatus is already written). */
  reached: Promise<void>;
  open(): void;
}

/** Wraps a real manager so that its next `runStep` waits for `gate.open()`. */
export function holdFirstStep(real: WorkspaceManager): { manager: WorkspaceManager; arm(): Gate } {
  let pending: { gate: Promise<void>; arrived: () => void } | null = null;
  const manager: WorkspaceManager = Object.assign(Object.create(real) as WorkspaceManager, {
    runStep: async (...args: Parameters<WorkspaceManager["runStep"]>) => {
      const held = pending;
      pending = null;
      if (held) {
        held.arrived();
        await held.gate;
      }
      return real.runStep(...args);
    },
  });
  return {
    manager,
    arm() {
      let open!: () => void;
      let arrived!: () => void;
      const gate = new Promise<void>((resolve) => {
        open = resolve;
      });
      const reached = new Promise<void>((resolve) => {
        arrived = resolve;
      });
      pending = { gate, arrived };
      return { reached, open };
    },
  };
}

export async function readTask(t: TestServer, id: string): Promise<TaskRow> {
  const [row] = await t.server.database.db.select().from(tasks).where(eq(tasks.id, id));
  if (!row) throw new Error(`task ${id} not found`);
  return row;
}

export async function vmSessionsOf(t: TestServer, taskId: string) {
  return t.server.database.db.select().from(vmSessions).where(eq(vmSessions.taskId, taskId));
}

/** Polls `check` until it returns a value (for work done by real processes, not timers). */
export async function eventually<T>(check: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
