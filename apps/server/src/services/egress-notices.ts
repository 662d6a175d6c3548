/**
 * Tells a task's user which outside hosts its sandbox tried to reach and was
 * refused by the egress proxy: a system message in the task's conversation,
 * once per host and port, so an agent that "cannot install anything" shows why
 * (and which setting opens it) instead of failing silently.
 *
 * Invariants: a refused host is announced at most once per task while this
 * process runs, and at most MAX_HOSTS_PER_TASK hosts per task (a sandbox
 * scanning the internet must not flood the conversation); the sets are kept
 * for the most recent MAX_TASKS tasks only, so memory stays bounded. A failed
 * write is logged, never thrown into the proxy.
 */
import type { Logger } from "pino";
import type { EgressDenial } from "../execution/vm/egress/egress-proxy";
import type { MessageLog } from "./message-log";

const MAX_HOSTS_PER_TASK = 20;
const MAX_TASKS = 1000;

export interface EgressNoticeDeps {
  messages: Pick<MessageLog, "append">;
  log: Logger;
}

export class EgressNotices {
  /** Task id → "host:port" already announced; insertion order is recency. */
  private readonly announced = new Map<string, Set<string>>();

  constructor(private readonly deps: EgressNoticeDeps) {}

  /** Called by the egress proxy for every refused connection. */
  report(denial: EgressDenial): void {
    const target = `${denial.host}:${denial.port}`;
    const seen = this.hostsOf(denial.taskId);
    if (seen.has(target) || seen.size > MAX_HOSTS_PER_TASK) return;
    seen.add(target);
    const text =
      seen.size > MAX_HOSTS_PER_TASK
        ? `Network: more outside hosts were blocked; only the first ${MAX_HOSTS_PER_TASK} are listed.`
        : `Network: blocked a connection to ${target} (${denial.reason}). ` +
          "Allow it with SANDBOX_ALLOWED_DOMAINS on the server, or SANDBOX_NETWORK=on.";
    this.deps.messages
      .append(denial.taskId, "system", text, {
        kind: "egress-denied",
        host: denial.host,
        port: denial.port,
        reason: denial.reason,
      })
      .catch((error) => this.deps.log.warn({ taskId: denial.taskId, err: error }, "egress.notice.failed"));
  }

  private hostsOf(taskId: string): Set<string> {
    let seen = this.announced.get(taskId);
    if (seen) {
      this.announced.delete(taskId);
    } else {
      seen = new Set();
      if (this.announced.size >= MAX_TASKS) this.announced.delete(this.announced.keys().next().value!);
    }
    this.announced.set(taskId, seen);
    return seen;
  }
}
