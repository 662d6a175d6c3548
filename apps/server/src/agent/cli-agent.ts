/**
 * Runs one agent CLI (Claude Code, Codex) for one turn: through the turn's
 * ToolExecutor, so in remote mode it runs inside the sandbox, reading its
 * JSON-lines event stream as it arrives and handing each event to the CLI's
 * own event mapping.
 *
 * Invariants:
 * - Credentials reach the CLI only as environment of that one process: the
 *   command line holds option values and the names of environment variables,
 *   never a key. The user's message is not on the command line either: it is
 *   passed in the environment and piped to the CLI's standard input by the
 *   shell, so no text in it can be read as shell syntax or as an option.
 * - Everything the CLI reports goes through a redactor of the credentials
 *   before it reaches the turn's output or the turn's error.
 * - When the event mapping declares the turn lost (a refused key), the CLI is
 *   stopped at once instead of retrying for minutes.
 * - run() never throws: a missing binary, a crash or a stop becomes FAILED,
 *   and so does an event the mapping fails on (the CLI is stopped then).
 */
import type { CommandResult } from "@repo/workspace";
import { type Secret, SecretRedactor } from "../utils/redaction";
import { LineSplitter } from "./ndjson";
import { redactingOutput } from "./redacting-output";
import type { AgentOutput, AgentTurn, AgentTurnResult } from "./types";

/** What the CLI left behind when it exited. */
export interface CliExit {
  exitCode: number | null;
  signal: string | null;
  /** The end of its standard error, for failures that have no structured report. */
  stderr: string;
}

/** One CLI's reading of its own event stream. */
export interface CliEventMapping {
  /** One JSON value the CLI printed on a line of its own. */
  event(value: unknown): void;
  /** Set when the turn cannot succeed any more; the CLI is then stopped at once. */
  readonly fatalError: string | null;
  /** The turn's outcome once the CLI has exited. */
  finish(exit: CliExit): AgentTurnResult;
}

export interface CliRun {
  /** Shell command to run in the workspace; it passes the message on with pipeMessageInto. */
  command: string;
  /** Environment of this one process (credentials, HOME, the CLI's settings). */
  env: Record<string, string>;
  /** Values to redact from everything the CLI reports (the credentials in `env`). */
  secrets: Secret[];
  /** Builds the CLI's event mapping on the (redacting) output of the turn. */
  mapping(output: AgentOutput): CliEventMapping;
}

/** Characters of standard error kept for the error message. */
const STDERR_TAIL = 4000;
/** Largest piece of the message in one environment variable (Linux caps one at 128 KiB). */
const MESSAGE_PIECE = 16 * 1024;
const MESSAGE_VARIABLE = "UMBRA_AGENT_MESSAGE";

/**
 * A shell pipeline that runs `cli` (a command line, already quoted) with the
 * turn's message on its standard input. The message travels in
 * `messageEnvironment(message)`; the CLI itself does not inherit those
 * variables, so neither do the commands it runs.
 */
export function pipeMessageInto(message: string, cli: string): string {
  const names = splitMessage(message).map((_, i) => `${MESSAGE_VARIABLE}_${i}`);
  return `printf '%s' ${names.map((name) => `"$${name}"`).join(" ")} | { unset ${names.join(" ")}; exec ${cli}; }`;
}

/** The environment variables that carry the message for pipeMessageInto. */
export function messageEnvironment(message: string): Record<string, string> {
  return Object.fromEntries(splitMessage(message).map((piece, i) => [`${MESSAGE_VARIABLE}_${i}`, piece]));
}

function splitMessage(message: string): string[] {
  const pieces: string[] = [];
  let from = 0;
  while (from < message.length || pieces.length === 0) {
    let to = Math.min(from + MESSAGE_PIECE, message.length);
    // Never split a surrogate pair: each piece must be valid text on its own.
    if (to < message.length && /[\uD800-\uDBFF]/.test(message[to - 1]!)) to -= 1;
    pieces.push(message.slice(from, to));
    from = to;
  }
  return pieces;
}

export async function runCli(turn: AgentTurn, run: CliRun): Promise<AgentTurnResult> {
  if (turn.signal.aborted) return stopped();
  const redactor = new SecretRedactor(run.secrets);
  const output = redactingOutput(turn.output, redactor);
  const mapping = run.mapping(output);
  const lines = new LineSplitter();
  const fatal = new AbortController();
  const signal = AbortSignal.any([turn.signal, fatal.signal]);
  let stderr = "";
  let readError: string | null = null;

  const handleLine = (line: string) => {
    if (!line.trim()) return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      // Not an event (a warning printed to stdout): shown as it is rather than lost.
      output.commandOutput("stdout", `${line}\n`);
      return;
    }
    try {
      mapping.event(value);
    } catch (error) {
      // Runs in the child's output handler, where a throw would take the server down.
      readError ??= `could not read the agent's events: ${errorText(error)}`;
    }
    if ((mapping.fatalError || readError) && !fatal.signal.aborted) fatal.abort();
  };

  let result: CommandResult;
  try {
    result = await turn.executor.runCommand(run.command, {
      signal,
      env: { ...run.env, ...messageEnvironment(turn.message) },
      onOutput: (stream, text) => {
        if (stream === "stdout") for (const line of lines.push(text)) handleLine(line);
        else stderr = (stderr + text).slice(-STDERR_TAIL);
      },
    });
  } catch (error) {
    output.flush();
    return { status: "FAILED", error: redactor.redact(`could not run the agent: ${errorText(error)}`) };
  }
  for (const line of lines.end()) handleLine(line);
  output.flush();

  const outcome = mapping.finish({ exitCode: result.exitCode, signal: result.signal, stderr });
  // A stopped turn keeps its session: the CLI saved the conversation so far, and the next turn resumes it.
  if (turn.signal.aborted) return { ...outcome, ...stopped() };
  const fatalError = mapping.fatalError ?? readError;
  if (fatalError) return { ...outcome, status: "FAILED", error: redactor.redact(fatalError) };
  return outcome.status === "FAILED" ? { ...outcome, error: redactor.redact(outcome.error) } : outcome;
}

/** Why a CLI that printed no outcome of its own ended, from its exit and standard error. */
export function exitReason(cli: string, exit: CliExit): string {
  const how =
    exit.exitCode === null ? `was killed by ${exit.signal ?? "a signal"}` : `exited with code ${exit.exitCode}`;
  const detail = lastLines(exit.stderr);
  if (exit.exitCode === 127) return `${cli} could not be started (not found): ${detail || how}`;
  return detail ? `${cli} ${how}: ${detail}` : `${cli} ${how}`;
}

function lastLines(text: string): string {
  const lines = text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  return lines.slice(-3).join(" / ").slice(-1000);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message || error.name : String(error);
}

function stopped(): AgentTurnResult {
  return { status: "FAILED", error: "the turn was stopped" };
}
