// @vitest-environment jsdom
import { cleanup, render } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { ToolRow } from "../src/components/tool-row";
import { toolKind, type WorkRow } from "../src/work";

afterEach(cleanup);

type ToolRowData = Extract<WorkRow, { kind: "tool" }>;

function row(toolName: string, input: unknown, output?: unknown, extra: Partial<ToolRowData> = {}): ToolRowData {
  return {
    kind: "tool",
    id: "r1",
    toolCallId: "c1",
    toolName,
    toolKind: toolKind(toolName),
    input,
    ...(output !== undefined ? { output } : {}),
    done: output !== undefined,
    streaming: false,
    streamed: [],
    ...extra,
  };
}

function show(data: ToolRowData): HTMLElement {
  return render(
    <ol>
      <ToolRow row={data} />
    </ol>,
  ).container;
}

describe("ToolRow", () => {
  it("shows a Claude Code Edit as a mini diff with its counts", () => {
    const root = show(row("Edit", { file_path: "src/a.ts", old_string: "one", new_string: "two\nthree" }, "ok"));
    expect(root.querySelector("summary")?.textContent).toBe("±Editedsrc/a.ts+2 −1done");
    expect([...root.querySelectorAll(".mini-diff-line--del")].map((el) => el.textContent)).toEqual(["-one\n"]);
    expect([...root.querySelectorAll(".mini-diff-line--add")].map((el) => el.textContent)).toEqual([
      "+two\n",
      "+three\n",
    ]);
  });

  it("shows a command with its streamed output once and a failing exit code", () => {
    const root = show(
      row(
        "Bash",
        { command: "npm test" },
        { exitCode: 1, output: "\u001b[31mFAIL\u001b[0m\n" },
        { streamed: [{ stream: "stdout", text: "\u001b[31mFAIL\u001b[0m\n" }] },
      ),
    );
    expect(root.querySelector(".tool-call")?.className).toContain("tool-call--error");
    expect(root.querySelectorAll(".command-output")).toHaveLength(1);
    expect(root.querySelector(".command-output")?.textContent).toBe("FAIL\n");
    expect(root.querySelector(".ansi-red-fg")?.textContent).toBe("FAIL");
    expect(root.querySelector(".exit-code")?.textContent).toBe("Exit code 1");
  });

  it("shows a plan as a checklist", () => {
    const root = show(
      row(
        "TodoWrite",
        {
          todos: [
            { content: "write", status: "completed" },
            { content: "test", status: "pending" },
          ],
        },
        "ok",
      ),
    );
    expect([...root.querySelectorAll(".todo")].map((li) => li.className)).toEqual([
      "todo todo--completed",
      "todo todo--pending",
    ]);
  });

  it("shows a tool nobody knows with its input and output", () => {
    const root = show(row("web_fetch", { url: "https://example.com" }, { status: 200 }));
    expect(root.querySelector("summary")?.textContent).toBe("ƒweb_fetchhttps://example.comdone");
    expect([...root.querySelectorAll("h4")].map((h) => h.textContent)).toEqual(["Input", "Output"]);
  });

  it("marks a call that is still running", () => {
    const root = show(row("run_command", { command: "sleep 5" }, undefined, { streaming: true }));
    expect(root.querySelector(".tool-state")?.textContent).toBe("running…");
  });
});
