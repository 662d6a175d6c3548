/**
 * The Terminal tab: every command the agent ran, in order, each with its
 * output (ANSI colours rendered), as one scrolling log that follows new
 * output while the reader is at the bottom and offers "Jump to latest" when
 * they scrolled up to read.
 */
import { useMemo, useRef } from "react";
import { useFollowScroll } from "../hooks/use-follow-scroll";
import { chunksText, commandResult, toolCommand, type WorkRow } from "../work";
import { AnsiText } from "./ansi-text";

interface Run {
  id: string;
  command: string | null;
  output: string;
  running: boolean;
  exitCode: number | null;
}

/** The command runs among the work rows: command tool calls and stand-alone output. */
export function terminalRuns(rows: readonly WorkRow[]): Run[] {
  const runs: Run[] = [];
  for (const row of rows) {
    if (row.kind === "tool" && row.toolKind === "command") {
      const result = row.done ? commandResult(row.output) : null;
      runs.push({
        id: row.id,
        command: toolCommand(row.input) ?? row.toolName,
        output: chunksText(row.streamed) || result?.output || "",
        running: !row.done && row.streaming,
        exitCode: result?.exitCode ?? null,
      });
    } else if (row.kind === "output") {
      runs.push({ id: row.id, command: null, output: chunksText(row.chunks), running: row.streaming, exitCode: null });
    }
  }
  return runs;
}

export function TerminalPanel({ rows }: { rows: readonly WorkRow[] }) {
  const runs = useMemo(() => terminalRuns(rows), [rows]);
  const box = useRef<HTMLDivElement>(null);
  const size = runs.reduce((n, run) => n + run.output.length, runs.length);
  const { following, jumpToLatest } = useFollowScroll(box, size);
  return (
    <div className="terminal-panel">
      <section className="terminal-log terminal" ref={box} data-testid="terminal" aria-label="Agent terminal">
        {runs.length === 0 && <p className="terminal-empty">No commands yet.</p>}
        {runs.map((run) => (
          <div key={run.id} className="terminal-run">
            {run.command && (
              <div className="terminal-command">
                <span aria-hidden="true">$ </span>
                {run.command}
              </div>
            )}
            <pre className="terminal-output">
              <AnsiText text={run.output} />
            </pre>
            {run.running && <div className="terminal-status">running…</div>}
            {run.exitCode !== null && run.exitCode !== 0 && (
              <div className="terminal-status terminal-status--failed">exit code {run.exitCode}</div>
            )}
          </div>
        ))}
      </section>
      {!following && (
        <button type="button" className="jump-latest" onClick={jumpToLatest}>
          Jump to latest ↓
        </button>
      )}
    </div>
  );
}
