/**
 * GET /metrics in Prometheus text format: task counts by status and
 * initStatus (read from the database, so every server process agrees) and
 * this process's counters, optionally labelled (agent usage by agent kind),
 * gauges (with several server processes, each reports its own: owned
 * tasks, the lag of messages from the others), and readings other
 * components register (the environment cache, workspace capacity).
 *
 * Counters are per process, as Prometheus expects: they only grow, and a
 * fleet's total is the sum over its processes.
 */
import { type Db, queryRows } from "@repo/db";
import { sql } from "drizzle-orm";

interface Reading {
  type: "gauge" | "counter";
  help: string;
  read(): number | Promise<number>;
}

type Labels = Record<string, string>;

interface Counter {
  help: string;
  /** By the label set's rendering (`{agent="codex"}`, or "" without labels). */
  values: Map<string, number>;
}

export class Metrics {
  private readonly counters = new Map<string, Counter>();
  private readonly gauges = new Map<string, { help: string; value: number }>();
  private readonly readings = new Map<string, Reading>();

  /** A value read at every scrape. */
  register(name: string, type: Reading["type"], help: string, read: Reading["read"]): void {
    this.readings.set(name, { type, help, read });
  }

  increment(name: string, help: string, by = 1, labels: Labels = {}): void {
    const counter = this.counters.get(name) ?? { help, values: new Map() };
    const key = renderLabels(labels);
    counter.values.set(key, (counter.values.get(key) ?? 0) + by);
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
    for (const [name, { help, values }] of this.counters) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
      for (const [labels, value] of values) lines.push(`${name}${labels} ${value}`);
    }
    for (const [name, { help, value }] of this.gauges) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`);
    }
    for (const [name, { type, help, read }] of this.readings) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${await read()}`);
    }
    const memory = process.memoryUsage();
    lines.push("# TYPE umbra_process_resident_memory_bytes gauge", `umbra_process_resident_memory_bytes ${memory.rss}`);
    return `${lines.join("\n")}\n`;
  }
}

function renderLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return "";
  const quoted = (value: string) => value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
  return `{${entries.map(([key, value]) => `${key}="${quoted(value)}"`).join(",")}}`;
}
