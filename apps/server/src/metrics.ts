/**
 * GET /metrics in Prometheus text format: task counts by status and
 * initStatus (read from the database, so every server process agrees) and
 * this process's counters and gauges (with several server processes, each
 * reports its own: owned tasks, take-overs, the lag of messages from the others).
 */
import { type Db, queryRows } from "@repo/db";
import { sql } from "drizzle-orm";

export class Metrics {
  private readonly counters = new Map<string, { help: string; value: number }>();
  private readonly gauges = new Map<string, { help: string; value: number }>();

  increment(name: string, help: string, by = 1): void {
    const counter = this.counters.get(name) ?? { help, value: 0 };
    counter.value += by;
    this.counters.set(name, counter);
  }

  /** Sets a gauge of this process. */
  set(name: string, help: string, value: number): void {
    this.gauges.set(name, { help, value });
  }

  async render(db: Db): Promise<string> {
    const rows = await queryRows<{ status: string; init_status: string; n: number }>(
      db,
      sql`SELECT status, init_status, count(*)::int AS n FROM tasks GROUP BY status, init_status`,
    );
    const lines = [
      "# HELP umbra_tasks Tasks by status and initStatus.",
      "# TYPE umbra_tasks gauge",
      ...rows.map((r) => `umbra_tasks{status="${r.status}",init_status="${r.init_status}"} ${r.n}`),
    ];
    for (const [name, { help, value }] of this.counters) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name} ${value}`);
    }
    for (const [name, { help, value }] of this.gauges) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`);
    }
    const memory = process.memoryUsage();
    lines.push("# TYPE umbra_process_resident_memory_bytes gauge", `umbra_process_resident_memory_bytes ${memory.rss}`);
    return `${lines.join("\n")}\n`;
  }
}
