/**
 * The Files tab: a read-only browser of the task branch as the server saved
 * it after the last turn (GET /api/tasks/:id/files). Directories list their
 * entries; a file shows with line numbers and highlighting. The path being
 * viewed is kept in the URL (`?file=`), so a reload or a shared link opens it.
 */
import { errorText } from "../api";
import { ApiError } from "../api/client";
import { useFilesQuery } from "../api/queries";
import { languageOfPath } from "../highlight";
import { setSearchParams, useSearchParam } from "../router";
import { CopyButton, HighlightedLine, useHighlight } from "./code-block";

function formatSize(bytes: number | null): string {
  if (bytes === null) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function Breadcrumbs({ path }: { path: string }) {
  const parts = path ? path.split("/") : [];
  return (
    <nav className="breadcrumbs" aria-label="Path">
      <button type="button" className="link-button" onClick={() => setSearchParams({ file: null })}>
        root
      </button>
      {parts.map((part, index) => {
        const to = parts.slice(0, index + 1).join("/");
        return (
          <span key={to}>
            {" / "}
            {index === parts.length - 1 ? (
              <span aria-current="page">{part}</span>
            ) : (
              <button type="button" className="link-button" onClick={() => setSearchParams({ file: to })}>
                {part}
              </button>
            )}
          </span>
        );
      })}
    </nav>
  );
}

function FileText({ path, content }: { path: string; content: string }) {
  const lines = content.replace(/\n$/, "").split("\n");
  const highlighted = useHighlight(content.replace(/\n$/, ""), languageOfPath(path));
  return (
    <div className="file-view">
      <div className="code-block-bar">
        <span className="code-lang">{lines.length} lines</span>
        <CopyButton text={content} label="Copy file" />
      </div>
      <pre className="file-lines">
        <code>
          {lines.map((line, index) => (
            // biome-ignore lint/suspicious/noArrayIndexKey: line numbers are the identity
            <span key={index} className="file-line">
              <span className="line-number" aria-hidden="true">
                {index + 1}
              </span>
              {highlighted?.[index] ? <HighlightedLine tokens={highlighted[index]!} /> : line}
              {"\n"}
            </span>
          ))}
        </code>
      </pre>
    </div>
  );
}

export function FilesPanel({ taskId, hasBranch }: { taskId: string; hasBranch: boolean }) {
  const path = useSearchParam("file") ?? "";
  const query = useFilesQuery(taskId, path, hasBranch);
  if (!hasBranch) return <p className="empty">The task branch is created when the workspace is first prepared.</p>;
  const entry = query.data;
  const notFound = query.error instanceof ApiError && query.error.code === "NOT_FOUND";
  return (
    <div className="files">
      <div className="files-header">
        <Breadcrumbs path={path} />
        {entry && (
          <span className="muted" title={entry.commit}>
            at <code>{entry.commit.slice(0, 8)}</code>
          </span>
        )}
      </div>
      {query.isPending && <p className="muted">Loading…</p>}
      {query.error && (
        <p className="muted">
          {notFound
            ? "Nothing saved at this path on the task branch yet."
            : `Could not load: ${errorText(query.error)}`}
        </p>
      )}
      {entry?.type === "dir" && (
        <ul className="file-list">
          {path && (
            <li>
              <button
                type="button"
                className="file-entry"
                onClick={() => setSearchParams({ file: path.split("/").slice(0, -1).join("/") || null })}
              >
                <span aria-hidden="true">↰</span> ..
              </button>
            </li>
          )}
          {entry.entries.map((item) => (
            <li key={item.name}>
              {item.type === "submodule" ? (
                <span className="file-entry file-entry--static">
                  <span aria-hidden="true">◇</span> {item.name} <span className="muted">(submodule)</span>
                </span>
              ) : (
                <button
                  type="button"
                  className="file-entry"
                  onClick={() => setSearchParams({ file: path ? `${path}/${item.name}` : item.name })}
                >
                  <span aria-hidden="true">{item.type === "dir" ? "▸" : "·"}</span> {item.name}
                  {item.type === "dir" ? "/" : ""}
                  <span className="muted file-size">{formatSize(item.size)}</span>
                </button>
              )}
            </li>
          ))}
        </ul>
      )}
      {entry?.type === "file" &&
        (entry.binary ? (
          <p className="muted">Binary file, {formatSize(entry.size)}.</p>
        ) : entry.truncated ? (
          <p className="muted">This file is too large to show ({formatSize(entry.size)}).</p>
        ) : (
          <FileText path={entry.path} content={entry.content} />
        ))}
    </div>
  );
}
