/**
 * The tools the `llm` agent offers its model: read, write, edit, list and grep
 * files, search the indexed repository, and run shell commands.
 *
 * Invariants:
 * - Every tool acts only through the turn's ToolExecutor, so in remote mode it
 *   acts inside the task's sandbox and path confinement is the executor's job
 *   (`..`, absolute paths and escaping symlinks are refused there).
 * - A failing tool throws LlmToolError with a message written for the model
 *   (workspace error codes kept). The AI SDK turns that into an error result
 *   for the model, which can then recover; it never ends the loop.
 * - What goes back to the model is bounded: command output is the last
 *   RUN_COMMAND_OUTPUT_LIMIT characters, file reads, grep lines and directory
 *   listings are capped, so one tool call cannot flood the context window.
 * - run_command streams its output to the turn's AgentOutput as it arrives and
 *   is killed when the turn's signal aborts or its timeout elapses.
 */
import { type DirEntry, WorkspaceOperationError, WorkspacePathError } from "@repo/workspace";
import { tool } from "ai";
import { z } from "zod";
import type { AgentTurn } from "./types";

/** What the tools need from a turn. */
export type LlmToolContext = Pick<AgentTurn, "executor" | "searchCode" | "signal" | "output">;

/** Characters of a command's combined output returned to the model (its tail). */
export const RUN_COMMAND_OUTPUT_LIMIT = 16 * 1024;
/** Default run_command timeout in milliseconds (10 minutes). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 10 * 60_000;
/** Upper bound for a timeout the model asks for, in milliseconds (1 hour). */
export const MAX_COMMAND_TIMEOUT_MS = 60 * 60_000;
/** Characters of a file returned by read_file before it is cut. */
export const READ_FILE_LIMIT = 100_000;
const GREP_MAX_RESULTS = 200;
const GREP_LINE_LIMIT = 400;
const LIST_DIR_LIMIT = 1000;
const SEARCH_DEFAULT_LIMIT = 10;
const SEARCH_MAX_LIMIT = 50;

/** A tool call failed; the message is what the model is told. */
export class LlmToolError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LlmToolError";
  }
}

export function createLlmTools(context: LlmToolContext) {
  const { executor } = context;
  return {
    read_file: tool({
      description: `Read a text file of the workspace. Files longer than ${READ_FILE_LIMIT} characters are cut; use grep or run_command (e.g. sed -n) to look at parts of large files.`,
      inputSchema: z.object({ path: z.string().min(1).describe("Path relative to the workspace root") }),
      execute: ({ path }) =>
        attempt(async () => {
          const content = await executor.readFile(path);
          if (content.length <= READ_FILE_LIMIT) return { path, content };
          return { path, content: content.slice(0, READ_FILE_LIMIT), truncated: true, totalChars: content.length };
        }),
    }),

    write_file: tool({
      description:
        "Create or overwrite a file of the workspace with the given content. Parent directories are created as needed. Prefer edit_file for small changes to existing files.",
      inputSchema: z.object({
        path: z.string().min(1).describe("Path relative to the workspace root"),
        content: z.string().describe("The complete new content of the file"),
      }),
      execute: ({ path, content }) =>
        attempt(async () => {
          await executor.writeFile(path, content);
          return { path, bytes: Buffer.byteLength(content, "utf8") };
        }),
    }),

    edit_file: tool({
      description:
        "Replace text in an existing file. `search` must match the file's text exactly (including whitespace) and occur exactly once, unless `all` is true, which replaces every occurrence.",
      inputSchema: z.object({
        path: z.string().min(1).describe("Path relative to the workspace root"),
        search: z.string().min(1).describe("Exact text to find"),
        replace: z.string().describe("Text to put in its place"),
        all: z.boolean().optional().describe("Replace every occurrence instead of requiring exactly one"),
      }),
      execute: ({ path, search, replace, all }) =>
        attempt(async () => {
          const { replacements } = await executor.editFile(path, search, replace, { all: all ?? false });
          return { path, replacements };
        }),
    }),

    list_dir: tool({
      description: "List the entries of a directory of the workspace (default: the workspace root).",
      inputSchema: z.object({
        path: z.string().optional().describe("Directory relative to the workspace root; default the root"),
      }),
      execute: ({ path }) =>
        attempt(async () => {
          const dir = path?.trim() || ".";
          const entries = await executor.listDir(dir);
          return listing(dir, entries);
        }),
    }),

    grep: tool({
      description: `Search file contents with a regular expression (JavaScript syntax). Skips .git and binary files. Returns at most ${GREP_MAX_RESULTS} matching lines.`,
      inputSchema: z.object({
        pattern: z.string().min(1).describe("Regular expression"),
        path: z.string().optional().describe("File or directory to search in, relative to the workspace root"),
        ignoreCase: z.boolean().optional().describe("Match case-insensitively"),
      }),
      execute: ({ pattern, path, ignoreCase }) =>
        attempt(async () => {
          const matches = await executor.grep(pattern, {
            path: path?.trim() || undefined,
            ignoreCase: ignoreCase ?? false,
            maxResults: GREP_MAX_RESULTS,
          });
          return {
            matches: matches.map((m) => ({ ...m, text: clip(m.text, GREP_LINE_LIMIT) })),
            truncated: matches.length >= GREP_MAX_RESULTS,
          };
        }),
    }),

    search_code: tool({
      description:
        "Full-text search over the repository as it was when the workspace was prepared (it does not see changes made in this task); while that index is still being built, a plain text search of the workspace's files answers instead. Every word must appear in a file. Good for finding where a concept, identifier or message lives.",
      inputSchema: z.object({
        query: z.string().min(1).describe("Words to search for"),
        limit: z.number().int().min(1).max(SEARCH_MAX_LIMIT).optional().describe("Maximum number of hits"),
      }),
      execute: ({ query, limit }) =>
        attempt(async () => ({ hits: await context.searchCode(query, limit ?? SEARCH_DEFAULT_LIMIT) })),
    }),

    run_command: tool({
      description: `Run a shell command (sh -c) in the workspace root and wait for it to finish. Returns the exit code and the last ${RUN_COMMAND_OUTPUT_LIMIT} characters of stdout and stderr combined. Do not start servers or other processes that never exit; they are killed at the timeout (default ${DEFAULT_COMMAND_TIMEOUT_MS / 60_000} minutes).`,
      inputSchema: z.object({
        command: z.string().min(1).describe("The command line, run with sh -c"),
        timeoutMs: z.number().int().positive().optional().describe("Kill the command after this many milliseconds"),
      }),
      execute: ({ command, timeoutMs }) => attempt(() => runCommand(context, command, timeoutMs)),
    }),
  };
}

export type LlmTools = ReturnType<typeof createLlmTools>;

async function runCommand(context: LlmToolContext, command: string, timeoutMs: number | undefined) {
  const tail = new OutputTail(RUN_COMMAND_OUTPUT_LIMIT);
  const result = await context.executor.runCommand(command, {
    signal: context.signal,
    timeoutMs: Math.min(timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, MAX_COMMAND_TIMEOUT_MS),
    onOutput: (stream, text) => {
      tail.push(text);
      return context.output.commandOutput(stream, text);
    },
  });
  return {
    exitCode: result.exitCode,
    signal: result.signal,
    timedOut: result.timedOut,
    aborted: result.aborted,
    ...(result.limit ? { limit: result.limit } : {}),
    output: tail.text(),
    truncated: tail.truncated,
  };
}

function listing(dir: string, entries: DirEntry[]) {
  const sorted = [...entries].sort((a, b) => a.name.localeCompare(b.name));
  const shown = sorted.slice(0, LIST_DIR_LIMIT);
  return {
    path: dir,
    entries: shown.map((e) => ({ name: e.type === "dir" ? `${e.name}/` : e.name, type: e.type, size: e.size })),
    truncated: sorted.length > shown.length,
  };
}

/** Keeps the last `limit` characters of a stream of text, in bounded memory. */
export class OutputTail {
  private buffer = "";
  truncated = false;

  constructor(private readonly limit: number) {}

  push(text: string): void {
    this.buffer += text;
    // Trim only once the buffer is twice the limit, so long outputs are not re-sliced on every chunk.
    if (this.buffer.length > 2 * this.limit) {
      this.buffer = this.buffer.slice(-this.limit);
      this.truncated = true;
    }
  }

  text(): string {
    if (this.buffer.length > this.limit) {
      this.buffer = this.buffer.slice(-this.limit);
      this.truncated = true;
    }
    return this.buffer;
  }
}

async function attempt<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw new LlmToolError(describeToolFailure(error), { cause: error });
  }
}

/** The message the model sees for a failed tool call. */
export function describeToolFailure(error: unknown): string {
  if (error instanceof WorkspacePathError) return error.message;
  if (error instanceof WorkspaceOperationError) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

function clip(text: string, limit: number): string {
  return text.length <= limit ? text : `${text.slice(0, limit)}…`;
}
