import type { MessageDto } from "@repo/types";
import { describe, expect, it } from "vitest";
import { buildConversation } from "../src/conversation";
import { buildWorkRows, commandResult, todoItems, toolEdits, toolKind, toolSummary } from "../src/work";

let sequence = 0;
function message(
  role: MessageDto["role"],
  content: string,
  metadata: Record<string, unknown> | null = null,
): MessageDto {
  sequence += 1;
  return { id: `m${sequence}`, role, content, sequence, metadata, createdAt: "2030-01-01T00:00:00.000Z" };
}

describe("agent work as rows", () => {
  it("folds the output a command streamed under that command and keeps the result's copy out", () => {
    const rows = buildWorkRows(
      buildConversation(
        [
          message("user", "run the tests"),
          message("tool", "", {
            kind: "tool-call",
            toolCallId: "c1",
            toolName: "run_command",
            input: { command: "npm test" },
            output: { exitCode: 1, output: "1 failed\n" },
            isError: false,
          }),
          message("tool", "1 failed\n", { kind: "command-output" }),
          message("assistant", "The tests fail.", { kind: "text" }),
        ],
        [],
      ),
    );
    expect(rows.map((row) => row.kind)).toEqual(["message", "tool", "message"]);
    const tool = rows[1]!;
    if (tool.kind !== "tool") throw new Error("expected a tool row");
    expect(tool.toolKind).toBe("command");
    expect(tool.streamed).toEqual([{ stream: "stdout", text: "1 failed\n" }]);
    expect(commandResult(tool.output).exitCode).toBe(1);
  });

  it("keeps output without a command before it as a row of its own (the shell agent)", () => {
    const rows = buildWorkRows(
      buildConversation([message("user", "echo hi"), message("tool", "hi\n", { kind: "command-output" })], []),
    );
    expect(rows.map((row) => row.kind)).toEqual(["message", "output"]);
  });

  it.each([
    ["run_command", "command"],
    ["Bash", "command"],
    ["command_execution", "command"],
    ["edit_file", "edit"],
    ["MultiEdit", "edit"],
    ["Write", "write"],
    ["read_file", "read"],
    ["Glob", "list"],
    ["Grep", "search"],
    ["search_code", "search"],
    ["TodoWrite", "todo"],
    ["file_change", "patch"],
    ["WebFetch", "other"],
  ])("classifies %s as %s", (name, kind) => {
    expect(toolKind(name)).toBe(kind);
  });

  it("reads edits from the llm agent's, Claude Code's and MultiEdit's inputs", () => {
    expect(toolEdits({ path: "a", search: "x", replace: "y" })).toEqual([{ before: "x", after: "y" }]);
    expect(toolEdits({ file_path: "a", old_string: "x", new_string: "y" })).toEqual([{ before: "x", after: "y" }]);
    expect(
      toolEdits({
        file_path: "a",
        edits: [
          { old_string: "1", new_string: "2" },
          { old_string: "3", new_string: "4" },
        ],
      }),
    ).toEqual([
      { before: "1", after: "2" },
      { before: "3", after: "4" },
    ]);
  });

  it("summarises a call in one line: the command, the path, or the pattern and where", () => {
    expect(toolSummary("Bash", { command: "npm test\nnpm run lint" })).toBe("npm test");
    expect(toolSummary("Read", { file_path: "src/app.ts" })).toBe("src/app.ts");
    expect(toolSummary("grep", { pattern: "TODO", path: "src" })).toBe("TODO in src");
  });

  it("reads a plan's items with their states", () => {
    expect(
      todoItems({
        todos: [
          { content: "write", status: "completed" },
          { content: "test", status: "in_progress" },
          { content: "ship", status: "pending" },
        ],
      }),
    ).toEqual([
      { text: "write", status: "completed" },
      { text: "test", status: "in_progress" },
      { text: "ship", status: "pending" },
    ]);
  });
});
