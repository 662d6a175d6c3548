/**
 * A small before/after view of one edit inside a tool row: removed lines,
 * then added lines, coloured, with their text as text. The full, highlighted
 * diff of the task lives in the Changes tab; this only says what one edit did.
 */
import type { Edit } from "../work";

const MAX_LINES = 60;

function lines(text: string): string[] {
  if (text === "") return [];
  const all = text.replace(/\n$/, "").split("\n");
  return all.length > MAX_LINES ? [...all.slice(0, MAX_LINES), `… ${all.length - MAX_LINES} more lines`] : all;
}

export function MiniDiff({ edits }: { edits: Edit[] }) {
  return (
    <div className="mini-diff">
      {edits.map((edit, index) => (
        // biome-ignore lint/suspicious/noArrayIndexKey: the edits of one call never reorder
        <pre key={index} className="mini-diff-hunk">
          {lines(edit.before).map((line, i) => (
            // biome-ignore lint/suspicious/noArrayIndexKey: static lines
            <span key={`d${i}`} className="mini-diff-line mini-diff-line--del">
              <span aria-hidden="true">-</span>
              {line}
              {"\n"}
            </span>
          ))}
          {lines(edit.after).map((line, i) => (
            // biome-ignore lint/suspicious/noArrayIndexKey: static lines
            <span key={`a${i}`} className="mini-diff-line mini-diff-line--add">
              <span aria-hidden="true">+</span>
              {line}
              {"\n"}
            </span>
          ))}
        </pre>
      ))}
    </div>
  );
}
