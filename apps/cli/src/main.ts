/**
 * The `umbra` command line: parses arguments (node:util parseArgs) and runs
 * one command against the server named by UMBRA_URL (default
 * http://127.0.0.1:3000), with UMBRA_TOKEN as its API token.
 *
 * Exit codes: 0 the task completed (or the command did its job), 1 the task
 * failed, 2 it was stopped, 3 bad usage or the server could not be used,
 * 130 interrupted with Ctrl+C (the task keeps running on the server).
 */
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { isBusy, lastOutcome, statusWords } from "@repo/types";
import { CheckoutError, checkoutTask } from "./checkout";
import { ApiError, type Client, createClient, resolveTask, type Task } from "./client";
import { followTask } from "./follow";
import { type Output, processOutput, Renderer } from "./render";

export const EXIT = { ok: 0, failed: 1, stopped: 2, usage: 3, interrupted: 130 } as const;

const USAGE = `Usage: umbra <command> [options]

Commands:
  run "<message>" [--repo <path|url>] [--branch <base>] [--agent <kind>] [--model <name>] [--title <text>] [--detach]
                           create a task (default repository: the one you are in) and follow it
  ls [--json]              list tasks, newest first
  watch <id>               follow a task until its current run ends
  say <id> "<message>"     send a follow-up and follow it
  stop <id>                stop what the task is doing
  checkout <id> [--force]  bring the task branch into this repository and switch to it
  open <id>                open the task page in the browser

A task id may be any unique prefix. Environment: UMBRA_URL (default http://127.0.0.1:3000), UMBRA_TOKEN,
BROWSER (the program "umbra open" uses; none = only print the URL).`;

/** The exit code for a task that is no longer busy. */
export function exitCodeFor(task: Pick<Task, "status" | "lastOutcome">): number {
  switch (lastOutcome(task)) {
    case "COMPLETED":
      return EXIT.ok;
    case "STOPPED":
      return EXIT.stopped;
    default:
      return EXIT.failed;
  }
}

function age(iso: string): string {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

function gitOutput(cwd: string, args: string[]): Promise<string | null> {
  return new Promise((done) => execFile("git", args, { cwd }, (error, stdout) => done(error ? null : stdout.trim())));
}

/** The repository a `run` is for: the given path or URL, else the repository the shell is in. */
async function repositoryFor(given: string | undefined, cwd: string): Promise<string> {
  const target = given ?? ".";
  if (/^(https?|ssh|git|file):\/\/|^[\w.-]+@[\w.-]+:/.test(target)) return target;
  const top = await gitOutput(resolve(cwd, target), ["rev-parse", "--show-toplevel"]);
  if (!top) throw new UsageError(`${resolve(cwd, target)} is not a git repository (give --repo <path or URL>)`);
  return top;
}

class UsageError extends Error {}

const CHECKOUT_SOURCES = {
  patches: "from the task's commits",
  diff: "the task's changes as one commit",
  delivered: "as Umbra delivered it here",
} as const;

async function follow(client: Client, renderer: Renderer, baseline: Task, afterSequence: number): Promise<number> {
  const interrupt = new AbortController();
  const onSigint = () => interrupt.abort(new Error("interrupted"));
  process.once("SIGINT", onSigint);
  try {
    const task = await followTask({ client, renderer, baseline, afterSequence, signal: interrupt.signal });
    renderer.outcome(task);
    return exitCodeFor(task);
  } catch (error) {
    if (interrupt.signal.aborted) {
      renderer.info(`Detached; the task goes on. Follow it again with: umbra watch ${baseline.id.slice(0, 8)}`);
      return EXIT.interrupted;
    }
    throw error;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

async function lastSequence(client: Client, id: string): Promise<number> {
  const messages = await client.messages(id);
  return messages.reduce((max, m) => Math.max(max, m.sequence), 0);
}

export interface MainOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  out?: Output;
}

export async function main(argv: string[], options: MainOptions = {}): Promise<number> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const out = options.out ?? processOutput;
  const renderer = new Renderer(out);
  const [command, ...rest] = argv;
  const client = createClient({
    baseUrl: env.UMBRA_URL || "http://127.0.0.1:3000",
    token: env.UMBRA_TOKEN || undefined,
  });
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        repo: { type: "string" },
        branch: { type: "string" },
        agent: { type: "string" },
        model: { type: "string" },
        title: { type: "string" },
        detach: { type: "boolean" },
        json: { type: "boolean" },
        force: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (!command || command === "help" || command === "--help" || command === "-h" || values.help) {
      out.write(`${USAGE}\n`);
      return command ? EXIT.ok : EXIT.usage;
    }
    const needId = () => {
      if (!positionals[0]) throw new UsageError(`umbra ${command} needs a task id`);
      return positionals[0];
    };
    switch (command) {
      case "run": {
        const message = positionals.join(" ").trim();
        if (!message) throw new UsageError('umbra run needs a message: umbra run "what to do"');
        const repoUrl = await repositoryFor(values.repo, cwd);
        const task = await client.createTask({
          repoUrl,
          message,
          ...(values.branch ? { baseBranch: values.branch } : {}),
          ...(values.title ? { title: values.title } : {}),
          ...(values.agent ? { agent: values.agent } : {}),
          ...(values.model ? { model: values.model } : {}),
        });
        renderer.info(`Task ${task.id} · ${task.mode} mode · ${repoUrl}`);
        renderer.info(`${client.baseUrl}/tasks/${task.id}`);
        if (values.detach) return EXIT.ok;
        return follow(client, renderer, task, 1);
      }
      case "ls": {
        const tasks = await client.listTasks();
        if (values.json) {
          out.write(`${JSON.stringify(tasks, null, 2)}\n`);
          return EXIT.ok;
        }
        if (tasks.length === 0) {
          out.write("No tasks.\n");
          return EXIT.ok;
        }
        for (const task of tasks) {
          const status = statusWords(task).toLowerCase();
          const repo = task.repoUrl.replace(/\/+$/, "").split(/[/:]/).slice(-2).join("/");
          out.write(
            `${task.id.slice(0, 8)}  ${status.padEnd(18)} ${age(task.createdAt).padStart(4)}  ${repo.padEnd(24)} ${task.title}\n`,
          );
        }
        return EXIT.ok;
      }
      case "watch": {
        const task = await resolveTask(client, needId());
        if (!isBusy(task)) {
          renderer.outcome(task);
          return exitCodeFor(task);
        }
        renderer.info(`Following ${task.id} (${task.status.toLowerCase()})…`);
        return follow(client, renderer, task, await lastSequence(client, task.id));
      }
      case "say": {
        const found = await resolveTask(client, needId());
        const message = positionals.slice(1).join(" ").trim();
        if (!message) throw new UsageError('umbra say needs a message: umbra say <id> "what next"');
        const before = await lastSequence(client, found.id);
        const task = await client.followUp(found.id, message);
        return follow(client, renderer, task, before + 1);
      }
      case "stop": {
        const task = await client.stop((await resolveTask(client, needId())).id);
        renderer.outcome(task);
        return EXIT.ok;
      }
      case "checkout": {
        const task = await resolveTask(client, needId());
        if (isBusy(task)) renderer.info("The task is still working: this is the branch as saved after its last turn.");
        const result = await checkoutTask(client, task, cwd, { force: values.force ?? false });
        renderer.line(
          `Branch ${result.branch}: ${result.commits} commit${result.commits === 1 ? "" : "s"} on the task's base (${CHECKOUT_SOURCES[result.source]}).`,
        );
        renderer.line(
          result.switched
            ? `Switched to ${result.branch}.`
            : `Not switched (you have local changes): git switch ${result.branch}`,
        );
        return EXIT.ok;
      }
      case "open": {
        const task = await resolveTask(client, needId());
        const url = `${client.baseUrl}/tasks/${task.id}`;
        out.write(`${url}\n`);
        // BROWSER names the program to open it with (as many tools read it); BROWSER=none only prints the URL.
        const opener =
          env.BROWSER ||
          (process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open");
        if (opener !== "none") execFile(opener, [url], () => undefined).unref?.();
        return EXIT.ok;
      }
      default:
        throw new UsageError(`unknown command "${command}"\n\n${USAGE}`);
    }
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith?.("ERR_PARSE_ARGS")) {
      out.error(`umbra: ${(error as Error).message}\n`);
      return EXIT.usage;
    }
    if (error instanceof ApiError || error instanceof CheckoutError) {
      out.error(`umbra: ${error.message}\n`);
      return error instanceof ApiError && error.code === "NETWORK" ? EXIT.usage : EXIT.failed;
    }
    out.error(`umbra: ${(error as Error).message ?? error}\n`);
    return EXIT.failed;
  }
}
