/**
 * How a task's events read in a terminal: one line per provisioning step
 * with a counter ("[2/4] Waiting for sandbox…"), the agent's text as it
 * streams, a line per tool call ("▸ Edited README.md"), command output as it
 * comes, and a closing line with the outcome. Colours only when the output
 * is a terminal (and NO_COLOR is unset); the text is the same either way.
 */

import type { InitProgressEvent, MessageDto, StreamChunk } from "@repo/types";
import { STEP_DISPLAY_NAMES, statusWords } from "@repo/types";
import pc from "picocolors";
import type { Task } from "./client";

export interface Output {
  write(text: string): void;
  error(text: string): void;
}

export const processOutput: Output = {
  write: (text) => process.stdout.write(text),
  error: (text) => process.stderr.write(text),
};

const VERBS: [RegExp, string][] = [
  [/^(run_command|bash|shell|exec|exec_command|command_execution|local_shell)$/i, "Ran"],
  [/^(edit_file|edit|multiedit|str_replace)$/i, "Edited"],
  [/^(write_file|write|create_file)$/i, "Wrote"],
  [/^(read_file|read|view)$/i, "Read"],
  [/^(list_dir|ls|glob)$/i, "Listed"],
  [/^(grep|search_code|search)$/i, "Searched"],
  [/^(todowrite|update_plan)$/i, "Planned"],
  [/^(apply_patch|file_change)$/i, "Changed files"],
];

function field(input: unknown, ...names: string[]): string | undefined {
  if (!input || typeof input !== "object") return undefined;
  for (const name of names) {
    const value = (input as Record<string, unknown>)[name];
    if (typeof value === "string") return value;
  }
  return undefined;
}

/** "Edited README.md", "Ran npm test", "web_fetch https://…" — one line for a tool call. */
export function toolLine(toolName: string, input: unknown): string {
  const verb = VERBS.find(([test]) => test.test(toolName))?.[1];
  const target = field(input, "command", "path", "file_path", "pattern", "query", "url") ?? "";
  const first = target.split("\n")[0] ?? "";
  const shown = first.length > 100 ? `${first.slice(0, 97)}…` : first;
  return `${verb ?? toolName}${shown ? ` ${shown}` : ""}`;
}

/** The outcome words of a task that is no longer busy. */
export function outcomeLine(
  task: Pick<Task, "status" | "errorMessage" | "initializationError" | "lastOutcome">,
): string {
  switch (task.status) {
    case "COMPLETED":
      return "Completed — ready for follow-up";
    case "FAILED":
      return `Failed: ${task.errorMessage ?? task.initializationError ?? "no reason given"}`;
    case "STOPPED":
      return `Stopped: ${task.errorMessage ?? "by request"}`;
    default:
      return statusWords(task);
  }
}

export class Renderer {
  private readonly colour: boolean;
  /** What the last write ended with, so a new block starts on a fresh line. */
  private atLineStart = true;
  private lastStream: "text" | "output" | null = null;

  constructor(
    private readonly out: Output = processOutput,
    colour = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR,
  ) {
    this.colour = colour;
  }

  private paint(fn: (s: string) => string, text: string): string {
    return this.colour ? fn(text) : text;
  }

  private write(text: string): void {
    if (!text) return;
    this.out.write(text);
    this.atLineStart = text.endsWith("\n");
  }

  /** A line of its own, after whatever streamed before it. */
  line(text: string): void {
    if (!this.atLineStart) this.write("\n");
    this.write(`${text}\n`);
    this.lastStream = null;
  }

  info(text: string): void {
    this.line(this.paint(pc.dim, text));
  }

  step(event: InitProgressEvent): void {
    const step = event.currentStep && event.currentStep in STEP_DISPLAY_NAMES ? event.currentStep : null;
    const name = event.stepName ?? (step ? STEP_DISPLAY_NAMES[step as keyof typeof STEP_DISPLAY_NAMES] : "");
    const counter = event.stepNumber ? `[${event.stepNumber}/${event.totalSteps}] ` : "";
    switch (event.type) {
      case "step-start":
        this.line(this.paint(pc.cyan, `${counter}${name}…`));
        break;
      case "init-complete":
        this.line(this.paint(pc.cyan, "Workspace ready"));
        break;
      case "init-error":
        this.line(this.paint(pc.red, `${name ? `${name} failed: ` : ""}${event.error ?? event.message ?? "failed"}`));
        break;
      default:
        break;
    }
  }

  chunk(chunk: StreamChunk): void {
    switch (chunk.type) {
      case "text":
        if (this.lastStream !== "text" && !this.atLineStart) this.write("\n");
        this.write(chunk.text);
        this.lastStream = "text";
        break;
      case "stdout":
      case "stderr":
        if (this.lastStream !== "output" && !this.atLineStart) this.write("\n");
        this.write(chunk.type === "stderr" ? this.paint(pc.yellow, chunk.text) : chunk.text);
        this.lastStream = "output";
        break;
      case "tool-call":
        this.line(this.paint(pc.magenta, `▸ ${toolLine(chunk.toolName, chunk.input)}`));
        break;
      case "tool-result":
        if (chunk.isError) this.line(this.paint(pc.red, `  ✗ ${chunk.toolName} failed: ${errorText(chunk.output)}`));
        break;
      default:
        break;
    }
  }

  /** A persisted message this run did not see stream (it ended before the room was joined). */
  message(message: MessageDto): void {
    const meta = message.metadata ?? {};
    if (typeof meta.toolName === "string") {
      this.line(this.paint(pc.magenta, `▸ ${toolLine(meta.toolName, meta.input)}`));
      return;
    }
    if (message.content) {
      if (!this.atLineStart) this.write("\n");
      this.write(message.content);
    }
  }

  outcome(task: Task): void {
    const text = outcomeLine(task);
    const paint = task.status === "COMPLETED" ? pc.green : task.status === "FAILED" ? pc.red : pc.yellow;
    this.line(this.paint((s) => pc.bold(paint(s)), text));
  }
}

function errorText(output: unknown): string {
  const text = typeof output === "string" ? output : JSON.stringify(output);
  return (text ?? "").split("\n")[0]!.slice(0, 200);
}
