/**
 * Agents that run a command in the workspace and stream its output:
 * - `shell` runs the user's message itself as `sh -c`;
 * - `command` runs an external agent CLI from the AGENT_COMMAND template,
 *   with `{message}` replaced by the shell-quoted message.
 * Exit code 0 ends the turn COMPLETED, anything else FAILED with the code.
 * A command the sandbox stopped at one of its limits fails with the limit
 * named ("killed: memory limit 2048 MB reached"), whatever its exit code.
 */
import type { AgentRunner, AgentTurn, AgentTurnResult } from "./types";

async function runInWorkspace(turn: AgentTurn, command: string): Promise<AgentTurnResult> {
  const result = await turn.executor.runCommand(command, {
    signal: turn.signal,
    onOutput: (stream, text) => turn.output.commandOutput(stream, text),
  });
  if (result.aborted) return { status: "FAILED", error: "stopped" };
  if (result.exitCode === 0 && !result.limit) return { status: "COMPLETED" };
  const why =
    result.exitCode === null ? `was killed by ${result.signal ?? "a signal"}` : `exited with code ${result.exitCode}`;
  return { status: "FAILED", error: result.limit ? `command ${why} — ${result.limit}` : `command ${why}` };
}

export class ShellAgentRunner implements AgentRunner {
  readonly kind = "shell" as const;

  run(turn: AgentTurn): Promise<AgentTurnResult> {
    return runInWorkspace(turn, turn.message);
  }
}

/** Quotes a string for POSIX sh. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export class CommandAgentRunner implements AgentRunner {
  readonly kind = "command" as const;

  /** @param template e.g. `aider --yes --message {message}`; without `{message}` the message is appended. */
  constructor(private readonly template: string) {}

  commandFor(message: string): string {
    const quoted = shellQuote(message);
    return this.template.includes("{message}")
      ? this.template.replaceAll("{message}", quoted)
      : `${this.template} ${quoted}`;
  }

  run(turn: AgentTurn): Promise<AgentTurnResult> {
    return runInWorkspace(turn, this.commandFor(turn.message));
  }
}
