/**
 * The agent's work as rows: a pure reading of the conversation (ChatItems)
 * that the conversation pane and the Terminal tab render.
 *
 * - A tool call is classified by its name, whichever agent made it: the llm
 *   agent's tools (read_file, write_file, edit_file, list_dir, grep,
 *   search_code, run_command), Claude Code's (Read, Write, Edit, MultiEdit,
 *   Bash, Glob, Grep, LS, TodoWrite, …) and Codex's command and file-change
 *   items. Anything else is a generic call.
 * - Command output that streams while a command tool runs arrives as its own
 *   message right after the call; it is folded under that call, and the
 *   result's copy of the same output is then not shown a second time.
 * - Command output with no call before it (the shell and command agents)
 *   stands on its own as a command row.
 */
import type { MessageRole } from "@repo/types";
import type { ChatItem, ChatPart } from "./conversation";

export type ToolKind = "command" | "edit" | "write" | "read" | "list" | "search" | "todo" | "patch" | "other";

const KINDS: [RegExp, ToolKind][] = [
  [/^(run_command|bash|shell|exec|exec_command|command_execution|local_shell|commandexecution)$/i, "command"],
  [/^(edit_file|edit|multiedit|str_replace|str_replace_editor|notebookedit)$/i, "edit"],
  [/^(write_file|write|create_file)$/i, "write"],
  [/^(read_file|read|view|notebookread)$/i, "read"],
  [/^(list_dir|ls|glob|list_files)$/i, "list"],
  [/^(grep|search_code|search|websearch|codebase_search)$/i, "search"],
  [/^(todowrite|todo_write|update_plan|todoread)$/i, "todo"],
  [/^(apply_patch|file_change|filechange|patch)$/i, "patch"],
];

export function toolKind(toolName: string): ToolKind {
  return KINDS.find(([test]) => test.test(toolName))?.[1] ?? "other";
}

type Record_ = Record<string, unknown>;
const record = (value: unknown): Record_ =>
  value && typeof value === "object" && !Array.isArray(value) ? (value as Record_) : {};
const str = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);

/** The first string field among `names` of a tool's input. */
export function inputField(input: unknown, ...names: string[]): string | undefined {
  const fields = record(input);
  for (const name of names) {
    const value = fields[name];
    if (typeof value === "string") return value;
    if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value.join(" ");
  }
  return undefined;
}

/** The path a file tool acts on. */
export function toolPath(input: unknown): string | undefined {
  return inputField(input, "path", "file_path", "filePath", "notebook_path", "filename");
}

/** The command line of a command tool. */
export function toolCommand(input: unknown): string | undefined {
  return inputField(input, "command", "cmd", "commandLine", "script");
}

export interface Edit {
  before: string;
  after: string;
}

/** The replacements of an edit tool: one (edit_file, Edit) or several (MultiEdit). */
export function toolEdits(input: unknown): Edit[] {
  const fields = record(input);
  const one = (value: unknown): Edit | null => {
    const r = record(value);
    const before = str(r.search) ?? str(r.old_string) ?? str(r.oldString) ?? str(r.old_str);
    const after = str(r.replace) ?? str(r.new_string) ?? str(r.newString) ?? str(r.new_str);
    return before !== undefined || after !== undefined ? { before: before ?? "", after: after ?? "" } : null;
  };
  if (Array.isArray(fields.edits)) return fields.edits.map(one).filter((e): e is Edit => e !== null);
  const single = one(fields);
  return single ? [single] : [];
}

export interface CommandResult {
  exitCode: number | null;
  /** The output the result carries (shown only when none streamed). */
  output: string;
  timedOut: boolean;
}

/** What a command tool's result says: exit code and output, from the llm agent's object or a plain string. */
export function commandResult(output: unknown): CommandResult {
  if (typeof output === "string") return { exitCode: null, output, timedOut: false };
  const r = record(output);
  const exit = r.exitCode ?? r.exit_code ?? r.code;
  const text = [str(r.output), str(r.stdout), str(r.aggregated_output), str(r.stderr)].filter(Boolean).join("");
  return { exitCode: typeof exit === "number" ? exit : null, output: text, timedOut: r.timedOut === true };
}

/** The text of a read tool's result (the llm agent's `{content}` or a plain string). */
export function readContent(output: unknown): string {
  if (typeof output === "string") return output;
  return str(record(output).content) ?? str(record(output).text) ?? "";
}

export interface TodoItem {
  text: string;
  status: "pending" | "in_progress" | "completed";
}

export function todoItems(input: unknown): TodoItem[] {
  const list = record(input).todos ?? record(input).plan ?? record(input).items;
  if (!Array.isArray(list)) return [];
  return list.map((item) => {
    const r = record(item);
    const status =
      str(r.status) === "completed" ? "completed" : str(r.status) === "in_progress" ? "in_progress" : "pending";
    return { text: str(r.content) ?? str(r.step) ?? str(r.text) ?? "", status };
  });
}

/** A one-line summary of a tool call for its row. */
export function toolSummary(toolName: string, input: unknown): string {
  const kind = toolKind(toolName);
  const text =
    kind === "command"
      ? toolCommand(input)
      : kind === "search" || kind === "list"
        ? [inputField(input, "pattern", "query", "q"), toolPath(input)].filter(Boolean).join(" in ")
        : (toolPath(input) ?? inputField(input, "pattern", "query", "url", "description"));
  const line = (text ?? "").split("\n")[0] ?? "";
  return line.length > 120 ? `${line.slice(0, 117)}…` : line;
}

export type OutputChunk = { stream: "stdout" | "stderr"; text: string };

export type WorkRow =
  | { kind: "message"; id: string; role: MessageRole; text: string; streaming: boolean }
  | {
      kind: "tool";
      id: string;
      toolCallId: string;
      toolName: string;
      toolKind: ToolKind;
      input: unknown;
      output?: unknown;
      isError?: boolean;
      done: boolean;
      streaming: boolean;
      /** Output streamed while the call ran (command tools). */
      streamed: OutputChunk[];
    }
  | { kind: "output"; id: string; chunks: OutputChunk[]; streaming: boolean };

function outputChunks(parts: readonly ChatPart[]): OutputChunk[] {
  return parts.flatMap((part) => (part.kind === "output" ? [{ stream: part.stream, text: part.text }] : []));
}

/** The conversation as rows, with command output folded under the command that produced it. */
export function buildWorkRows(items: readonly ChatItem[]): WorkRow[] {
  const rows: WorkRow[] = [];
  let openCommand: Extract<WorkRow, { kind: "tool" }> | null = null;
  for (const item of items) {
    const onlyOutput = item.parts.length > 0 && item.parts.every((part) => part.kind === "output");
    if (onlyOutput && openCommand) {
      openCommand.streamed.push(...outputChunks(item.parts));
      openCommand.streaming ||= item.streaming;
      continue;
    }
    openCommand = null;
    for (const [index, part] of item.parts.entries()) {
      const id = index === 0 ? item.id : `${item.id}:${index}`;
      if (part.kind === "text") {
        rows.push({ kind: "message", id, role: item.role, text: part.text, streaming: item.streaming });
      } else if (part.kind === "output") {
        const last = rows.at(-1);
        if (last?.kind === "output" && last.id.startsWith(item.id)) last.chunks.push(part);
        else
          rows.push({
            kind: "output",
            id,
            chunks: [{ stream: part.stream, text: part.text }],
            streaming: item.streaming,
          });
      } else {
        const row: Extract<WorkRow, { kind: "tool" }> = {
          kind: "tool",
          id,
          toolCallId: part.toolCallId,
          toolName: part.toolName,
          toolKind: toolKind(part.toolName),
          input: part.input,
          ...(part.output !== undefined ? { output: part.output } : {}),
          ...(part.isError !== undefined ? { isError: part.isError } : {}),
          done: part.done,
          streaming: item.streaming,
          streamed: [],
        };
        rows.push(row);
        openCommand = row.toolKind === "command" ? row : null;
      }
    }
  }
  return rows;
}

/** The text of output chunks, in order. */
export function chunksText(chunks: readonly OutputChunk[]): string {
  return chunks.map((chunk) => chunk.text).join("");
}
