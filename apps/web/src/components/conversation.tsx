/**
 * The conversation pane: user messages as plain text, the agent's text as
 * streamed Markdown, its tool calls as compact rows (tool-row.tsx) and the
 * output of commands folded under them. The pane follows new output while
 * the reader is at the bottom and offers "Jump to latest" when they are not.
 */
import { useMemo, useRef } from "react";
import type { ChatItem } from "../conversation";
import { useFollowScroll } from "../hooks/use-follow-scroll";
import { Markdown } from "../markdown";
import { buildWorkRows, chunksText, type WorkRow } from "../work";
import { CommandOutput, ToolRow } from "./tool-row";

/** Output longer than this many lines starts folded. */
const FOLD_LINES = 20;

function lineCount(text: string): number {
  return text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
}

function OutputRow({ row }: { row: Extract<WorkRow, { kind: "output" }> }) {
  const text = chunksText(row.chunks);
  const lines = lineCount(text);
  const stream = row.chunks.every((c) => c.stream === "stderr")
    ? "stderr"
    : row.chunks.every((c) => c.stream === "stdout")
      ? "stdout"
      : "mixed";
  return (
    <li className={`message message--tool work-row work-row--output${row.streaming ? " message--streaming" : ""}`}>
      <details open={lines <= FOLD_LINES || row.streaming}>
        <summary>
          <span className="tool-icon" aria-hidden="true">
            ›_
          </span>
          <span className="tool-verb">Output</span>
          <span className="muted">
            {lines} line{lines === 1 ? "" : "s"}
          </span>
          {row.streaming && <span className="tool-state tool-state--running">running…</span>}
        </summary>
        <CommandOutput text={text} stream={stream} />
      </details>
    </li>
  );
}

function Row({ row }: { row: WorkRow }) {
  if (row.kind === "tool") return <ToolRow row={row} />;
  if (row.kind === "output") return <OutputRow row={row} />;
  const user = row.role === "user";
  return (
    <li className={`message message--${row.role}${row.streaming ? " message--streaming" : ""}`}>
      <div className="message-role">
        {user ? "You" : row.role === "system" ? "System" : "Agent"}
        {row.streaming && (
          <>
            <span className="streaming-dot" aria-hidden="true" />
            <span className="visually-hidden">(streaming)</span>
          </>
        )}
      </div>
      <div className="message-body">
        {user ? <p className="user-text">{row.text}</p> : <Markdown text={row.text} />}
      </div>
    </li>
  );
}

export function Conversation({ items, footer }: { items: ChatItem[]; footer?: React.ReactNode }) {
  const rows = useMemo(() => buildWorkRows(items), [items]);
  const box = useRef<HTMLDivElement>(null);
  const size = items.reduce(
    (n, item) => n + item.parts.reduce((m, p) => m + (p.kind === "tool" ? (p.done ? 2 : 1) : p.text.length), 0),
    0,
  );
  const { following, jumpToLatest } = useFollowScroll(box, `${items.length}:${size}`);
  return (
    <div className="conversation-scroll" ref={box} data-testid="conversation">
      {rows.length === 0 ? (
        <p className="empty">No messages yet.</p>
      ) : (
        <ol className="conversation" aria-label="Conversation">
          {rows.map((row) => (
            <Row key={row.id} row={row} />
          ))}
        </ol>
      )}
      {footer}
      {!following && (
        <button type="button" className="jump-latest" onClick={jumpToLatest}>
          Jump to latest ↓
        </button>
      )}
    </div>
  );
}
