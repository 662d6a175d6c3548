/**
 * The task branch's changes against its base commit (GET /diff): a file list
 * with +/− counts, then each file's patch with added and removed lines
 * coloured. Lines are rendered as text, never as markup.
 */
import type { DiffResponse } from "@repo/types";
import { useMemo } from "react";
import { parsePatch } from "../diff";

export function DiffView({
  diff,
  error,
  onRefresh,
}: {
  diff: DiffResponse | null;
  error: string | null;
  onRefresh: () => void;
}) {
  const sections = useMemo(() => (diff ? parsePatch(diff.patch) : []), [diff]);
  const totals = diff?.files.reduce((t, f) => ({ add: t.add + f.additions, del: t.del + f.deletions }), {
    add: 0,
    del: 0,
  });
  return (
    <section className="diff" aria-labelledby="diff-title" data-testid="diff">
      <div className="section-header">
        <h2 id="diff-title">Changes</h2>
        {diff?.branch && (
          <span className="muted">
            on <code>{diff.branch}</code>
            {diff.baseCommitSha && (
              <>
                {" "}
                since <code>{diff.baseCommitSha.slice(0, 8)}</code>
              </>
            )}
          </span>
        )}
        <button type="button" className="button button--small" onClick={onRefresh}>
          Refresh
        </button>
      </div>
      {!diff && !error && <p className="muted">Loading changes…</p>}
      {error && !diff && <p className="muted">The diff is not available: {error}</p>}
      {diff && diff.files.length === 0 && <p className="empty">No changes yet.</p>}
      {diff && diff.files.length > 0 && (
        <>
          <table className="diff-files">
            <caption className="visually-hidden">Changed files</caption>
            <thead>
              <tr>
                <th scope="col">File</th>
                <th scope="col">Added</th>
                <th scope="col">Removed</th>
              </tr>
            </thead>
            <tbody>
              {diff.files.map((file) => (
                <tr key={file.path}>
                  <td>
                    <a href={`#diff-${encodeURIComponent(file.path)}`}>{file.path}</a>
                  </td>
                  <td className="diff-add">+{file.additions}</td>
                  <td className="diff-del">−{file.deletions}</td>
                </tr>
              ))}
            </tbody>
            {totals && diff.files.length > 1 && (
              <tfoot>
                <tr>
                  <th scope="row">{diff.files.length} files</th>
                  <td className="diff-add">+{totals.add}</td>
                  <td className="diff-del">−{totals.del}</td>
                </tr>
              </tfoot>
            )}
          </table>
          {sections.map((section, i) => (
            <details
              // biome-ignore lint/suspicious/noArrayIndexKey: a path can repeat in odd patches
              key={`${section.path}-${i}`}
              className="diff-file"
              id={`diff-${encodeURIComponent(section.path)}`}
              open
            >
              <summary>
                <code>{section.path || "(patch)"}</code>
              </summary>
              <pre className="diff-patch">
                {section.lines.map((line, j) => (
                  // biome-ignore lint/suspicious/noArrayIndexKey: lines are static once parsed
                  <span key={j} className={`diff-line diff-line--${line.kind}`}>
                    {line.text}
                    {"\n"}
                  </span>
                ))}
              </pre>
            </details>
          ))}
        </>
      )}
    </section>
  );
}
