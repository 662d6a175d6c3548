/**
 * One tool call as a compact row: an icon, what was done and to what, and
 * its state; opening it shows the details in the form that fits the tool —
 * an edit as a mini diff, a write or a read as a file view, a command with
 * its output (ANSI colours kept), a search as its hits, a plan as a
 * checklist. Only tools nobody knows show their input and output as data.
 */
import type { ReactNode } from "react";
import { languageOfPath } from "../highlight";
import {
  chunksText,
  commandResult,
  inputField,
  readContent,
  type ToolKind,
  todoItems,
  toolCommand,
  toolEdits,
  toolPath,
  toolSummary,
  type WorkRow,
} from "../work";
import { AnsiText } from "./ansi-text";
import { CodeBlock } from "./code-block";
import { MiniDiff } from "./mini-diff";

type ToolRowData = Extract<WorkRow, { kind: "tool" }>;

const VERBS: Record<ToolKind, string> = {
  command: "Ran",
  edit: "Edited",
  write: "Wrote",
  read: "Read",
  list: "Listed",
  search: "Searched",
  todo: "Plan",
  patch: "Changed files",
  other: "Called",
};

const ICONS: Record<ToolKind, string> = {
  command: "›_",
  edit: "±",
  write: "+",
  read: "◳",
  list: "▤",
  search: "⌕",
  todo: "☑",
  patch: "±",
  other: "ƒ",
};

function show(value: unknown): string {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

function stateOf(row: ToolRowData): "running" | "unfinished" | "error" | "ok" {
  if (!row.done) return row.streaming ? "running" : "unfinished";
  if (row.isError) return "error";
  if (row.toolKind === "command") {
    const exit = commandResult(row.output).exitCode;
    if (exit !== null && exit !== 0) return "error";
  }
  return "ok";
}

const STATE_TEXT = { running: "running…", unfinished: "no result", error: "failed", ok: "done" } as const;

export function CommandOutput({ text, stream }: { text: string; stream?: "stdout" | "stderr" | "mixed" }) {
  return (
    <pre className={`command-output terminal${stream ? ` command-output--${stream}` : ""}`} data-stream={stream}>
      <AnsiText text={text} />
    </pre>
  );
}

function CommandDetails({ row }: { row: ToolRowData }) {
  const streamed = chunksText(row.streamed);
  const result = row.done ? commandResult(row.output) : null;
  const text = streamed || result?.output || "";
  return (
    <>
      <pre className="command-line">
        <span aria-hidden="true">$ </span>
        {toolCommand(row.input)}
      </pre>
      {text ? <CommandOutput text={text} stream="mixed" /> : row.done && <p className="muted">No output.</p>}
      {result && (result.exitCode !== null || result.timedOut) && (
        <p className={`exit-code${result.exitCode === 0 ? "" : " exit-code--failed"}`}>
          {result.timedOut ? "Timed out" : `Exit code ${result.exitCode}`}
        </p>
      )}
    </>
  );
}

function details(row: ToolRowData): ReactNode {
  const path = toolPath(row.input) ?? "";
  if (row.done && row.isError) {
    return (
      <>
        {row.toolKind === "command" && <CommandDetails row={row} />}
        <pre className="tool-error">{show(row.output)}</pre>
      </>
    );
  }
  switch (row.toolKind) {
    case "command":
      return <CommandDetails row={row} />;
    case "edit":
      return <MiniDiff edits={toolEdits(row.input)} />;
    case "write":
      return <CodeBlock code={inputField(row.input, "content", "text") ?? ""} lang={languageOfPath(path)} />;
    case "read":
      return row.done ? <CodeBlock code={readContent(row.output)} lang={languageOfPath(path)} /> : null;
    case "todo":
      return (
        <ul className="todo-list">
          {todoItems(row.input).map((item, index) => (
            // biome-ignore lint/suspicious/noArrayIndexKey: a plan's items are positional
            <li key={index} className={`todo todo--${item.status}`}>
              <span aria-hidden="true">
                {item.status === "completed" ? "✓" : item.status === "in_progress" ? "▸" : "○"}
              </span>{" "}
              {item.text}
              <span className="visually-hidden"> ({item.status.replace("_", " ")})</span>
            </li>
          ))}
        </ul>
      );
    case "list":
    case "search":
    case "patch":
      return row.done ? <ResultText output={row.output} /> : null;
    case "other":
      return (
        <>
          {row.input !== undefined && (
            <>
              <h4>Input</h4>
              <pre>{show(row.input)}</pre>
            </>
          )}
          {row.done && (
            <>
              <h4>Output</h4>
              <pre>{show(row.output)}</pre>
            </>
          )}
        </>
      );
  }
}

/** A listing or search result as lines: strings, `{name}`/`{path}` entries or `{matches}`/`{hits}` lists. */
function ResultText({ output }: { output: unknown }) {
  const lines = resultLines(output);
  if (lines === null) return <pre>{show(output)}</pre>;
  if (lines.length === 0) return <p className="muted">Nothing found.</p>;
  return <pre className="result-lines">{lines.join("\n")}</pre>;
}

function resultLines(output: unknown): string[] | null {
  if (typeof output === "string") return output.split("\n").filter(Boolean);
  if (Array.isArray(output)) return output.map((item) => (typeof item === "string" ? item : show(item)));
  const fields = output && typeof output === "object" ? (output as Record<string, unknown>) : {};
  const list = fields.entries ?? fields.matches ?? fields.hits ?? fields.files ?? fields.changes;
  if (!Array.isArray(list)) return null;
  return list.map((item) => {
    if (typeof item === "string") return item;
    const r = (item ?? {}) as Record<string, unknown>;
    const where = [r.path ?? r.name ?? r.file, r.line ?? r.lineNumber].filter((v) => v !== undefined).join(":");
    const what = r.text ?? r.snippet ?? r.kind;
    return what !== undefined ? `${where}  ${String(what).split("\n")[0]}` : where;
  });
}

export function ToolRow({ row }: { row: ToolRowData }) {
  const state = stateOf(row);
  const summary = toolSummary(row.toolName, row.input);
  const edits = row.toolKind === "edit" ? toolEdits(row.input) : [];
  const counts =
    edits.length > 0
      ? {
          add: edits.reduce((n, e) => n + (e.after ? e.after.split("\n").length : 0), 0),
          del: edits.reduce((n, e) => n + (e.before ? e.before.split("\n").length : 0), 0),
        }
      : null;
  return (
    <li className={`work-row tool-call tool-call--${state}`} data-tool={row.toolName} data-tool-kind={row.toolKind}>
      <details open={row.toolKind === "command" && state === "running"}>
        <summary>
          <span className="tool-icon" aria-hidden="true">
            {ICONS[row.toolKind]}
          </span>
          <span className="tool-verb">{row.toolKind === "other" ? row.toolName : VERBS[row.toolKind]}</span>
          {summary && <code className="tool-summary">{summary}</code>}
          {counts && (
            <span className="tool-counts">
              <span className="diff-add">+{counts.add}</span> <span className="diff-del">−{counts.del}</span>
            </span>
          )}
          <span className={`tool-state tool-state--${state}`}>{STATE_TEXT[state]}</span>
        </summary>
        <div className="tool-body">{details(row)}</div>
      </details>
    </li>
  );
}
