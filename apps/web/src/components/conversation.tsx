/**
 * The conversation: user messages as plain text, assistant text as safe
 * Markdown, command output in <pre>, tool calls as collapsible <details>.
 * Streamed items render the same way and carry a "streaming" marker.
 */
import type { MessageRole } from "@repo/types";
import { useEffect, useRef } from "react";
import type { ChatItem, ChatPart } from "../conversation";
import { Markdown } from "../markdown";

const ROLE_NAMES: Record<MessageRole, string> = {
  user: "You",
  assistant: "Agent",
  tool: "Tool",
  system: "System",
};

/** Command output reads as "Output", not as the tool role that carries it. */
function roleName(item: ChatItem): string {
  if (item.parts.length > 0 && item.parts.every((part) => part.kind === "output")) return "Output";
  return ROLE_NAMES[item.role];
}

function show(value: unknown): string {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

function toolSummary(input: unknown): string {
  if (input && typeof input === "object") {
    const record = input as Record<string, unknown>;
    const first = ["command", "path", "pattern", "query"].map((k) => record[k]).find((v) => typeof v === "string");
    if (typeof first === "string") return first.length > 80 ? `${first.slice(0, 77)}…` : first;
  }
  return typeof input === "string" ? input.slice(0, 80) : "";
}

function Part({ part, role, streaming }: { part: ChatPart; role: MessageRole; streaming: boolean }) {
  switch (part.kind) {
    case "text":
      return role === "user" ? <p className="user-text">{part.text}</p> : <Markdown text={part.text} />;
    case "output":
      return (
        <pre className={`command-output command-output--${part.stream}`} data-stream={part.stream}>
          {part.text}
        </pre>
      );
    case "tool": {
      const summary = toolSummary(part.input);
      const state = !part.done ? (streaming ? "running" : "unfinished") : part.isError ? "error" : "ok";
      const stateText = { running: "running…", unfinished: "no result", error: "failed", ok: "done" }[state];
      return (
        <details className={`tool-call tool-call--${state}`}>
          <summary>
            <span className="tool-name">{part.toolName}</span>
            {summary && <code className="tool-summary">{summary}</code>}
            <span className="tool-state">{stateText}</span>
          </summary>
          {part.input !== undefined && (
            <>
              <h4>Input</h4>
              <pre>{show(part.input)}</pre>
            </>
          )}
          {part.done && (
            <>
              <h4>{part.isError ? "Error" : "Output"}</h4>
              <pre>{show(part.output)}</pre>
            </>
          )}
        </details>
      );
    }
  }
}

export function Conversation({ items }: { items: ChatItem[] }) {
  const end = useRef<HTMLDivElement>(null);
  const count = items.length;
  const lastSize = items.at(-1)?.parts.reduce((n, p) => n + (p.kind === "tool" ? 1 : p.text.length), 0) ?? 0;
  // Follow the output while the reader is already near the bottom.
  useEffect(() => {
    const el = end.current;
    if (!el || count + lastSize === 0) return;
    const nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 200;
    if (nearBottom) el.scrollIntoView?.({ block: "end" });
  }, [count, lastSize]);

  if (items.length === 0) return <p className="empty">No messages yet.</p>;
  return (
    <>
      <ol className="conversation" aria-label="Conversation">
        {items.map((item) => (
          <li key={item.id} className={`message message--${item.role}${item.streaming ? " message--streaming" : ""}`}>
            <div className="message-role">
              {roleName(item)}
              {item.streaming && (
                <>
                  <span className="streaming-dot" aria-hidden="true" />
                  <span className="visually-hidden">(streaming)</span>
                </>
              )}
            </div>
            <div className="message-body">
              {item.parts.map((part, i) => (
                // biome-ignore lint/suspicious/noArrayIndexKey: parts only ever grow at the end
                <Part key={i} part={part} role={item.role} streaming={item.streaming} />
              ))}
            </div>
          </li>
        ))}
      </ol>
      <div ref={end} />
    </>
  );
}
