/**
 * A user in a process of its own, as a browser is: it sends a follow-up over
 * HTTP and times it to the `task-status-update` RUNNING its Socket.IO client
 * receives. In the benchmark's own process the client would share the
 * server's thread, and could read the event only once the server yields it
 * (after the rest of the request: the turn's start, the answer) — a delay no
 * real client sees, since the event leaves the server when it is emitted.
 *
 * The parent (UserProcess) sends `{ taskId }` over IPC; the child answers
 * `{ postMs, runningMs, status }` (POST answered, RUNNING received, both from
 * the start of the POST, on the child's clock) or `{ error }`.
 *
 *   child: node --import tsx bench/lib/user-process.ts <server url>
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { StatusClient } from "./client";

export interface TimedFollowUp {
  postMs: number;
  runningMs: number;
  /** The task's status in the POST's answer (RUNNING for a warm follow-up). */
  status: string;
}

type Reply = TimedFollowUp | { ready: true } | { error: string };

/** The parent's handle on a user process. */
export class UserProcess {
  private pending: ((reply: Reply) => void) | null = null;

  private constructor(private readonly child: ChildProcess) {
    child.on("message", (reply) => {
      const done = this.pending;
      this.pending = null;
      done?.(reply as Reply);
    });
    child.on("exit", (code, signal) => {
      const done = this.pending;
      this.pending = null;
      done?.({ error: `user process exited (${signal ?? `code ${code}`})` });
    });
  }

  static async start(url: string): Promise<UserProcess> {
    const child = fork(fileURLToPath(import.meta.url), [url], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const user = new UserProcess(child);
    const ready = await user.ask({ ready: true });
    if ("error" in ready) throw new Error(ready.error);
    return user;
  }

  /** Sends a follow-up to `taskId` from the user's process; resolves once its RUNNING event arrived there. */
  async followUp(taskId: string): Promise<TimedFollowUp> {
    const reply = await this.ask({ taskId });
    if ("error" in reply) throw new Error(reply.error);
    if ("ready" in reply) throw new Error("the user process answered out of turn");
    return reply;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.disconnect();
    await exited;
  }

  private ask(message: object): Promise<Reply> {
    if (this.pending) throw new Error("one request at a time");
    return new Promise((resolve) => {
      this.pending = resolve;
      this.child.send(message);
    });
  }
}

/** The child: one client, one request at a time. */
function serve(url: string): void {
  // Listening before connecting: a message that arrived with no listener would be lost.
  const connected = StatusClient.connect(url);
  const joined = new Set<string>();
  process.on("disconnect", () => {
    void connected.then((client) => client.close()).finally(() => process.exit(0));
  });
  process.on("message", async (message: { ready?: true; taskId?: string }) => {
    try {
      const client = await connected;
      if (message.ready) {
        process.send!({ ready: true });
        return;
      }
      const taskId = message.taskId!;
      if (!joined.has(taskId)) {
        await client.join(taskId);
        joined.add(taskId);
      }
      const from = client.count(taskId);
      const start = performance.now();
      const response = await fetch(`${url}/api/tasks/${taskId}/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ message: "true" }),
      });
      const posted = performance.now();
      const body = (await response.json()) as { task?: { status: string } };
      if (response.status !== 202) throw new Error(`follow-up answered ${response.status}: ${JSON.stringify(body)}`);
      const running = await client.waitForStatus(taskId, "RUNNING", { from });
      process.send!({ postMs: posted - start, runningMs: running.monoMs - start, status: body.task?.status ?? "?" });
    } catch (error) {
      process.send!({ error: error instanceof Error ? error.message : String(error) });
    }
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serve(process.argv[2]!);
