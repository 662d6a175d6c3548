/**
 * The Changes tab (loaded lazily with the diff viewer): a tree of changed
 * files with +/− counts, a unified/split toggle, and every file's diff in
 * @git-diff-view/react with syntax highlighting.
 *
 * Invariant: the number of elements stays bounded however many files
 * changed. The file list is virtualized (@tanstack/react-virtual) in its own
 * scroll box, each file's view is built only while it is on screen, large
 * files start collapsed, and the tree lists directories collapsed past the
 * first level when the change is big.
 */
import "@git-diff-view/react/styles/diff-view-pure.css";
import { DiffModeEnum, DiffView } from "@git-diff-view/react";
import type { DiffResponse } from "@repo/types";
import { useVirtualizer } from "@tanstack/react-virtual";
import { Component, memo, type ReactNode, useEffect, useMemo, useRef, useState } from "react";
import { parsePatch } from "../../diff";
import { buildTree, type DiffFileEntry, diffEntries, LARGE_FILE_LINES, type TreeNode } from "../../diff-files";
import { languageOfPath } from "../../highlight";
import { FileTree } from "./file-tree";

type Mode = "unified" | "split";
const MODE_KEY = "umbra.diffMode";

function readMode(): Mode {
  try {
    return localStorage.getItem(MODE_KEY) === "split" ? "split" : "unified";
  } catch {
    return "unified";
  }
}

function prefersDark(): boolean {
  const forced = document.documentElement.dataset.theme;
  if (forced) return forced === "dark";
  return window.matchMedia?.("(prefers-color-scheme: dark)").matches ?? false;
}

function useDarkTheme(): boolean {
  const [dark, setDark] = useState(prefersDark);
  useEffect(() => {
    const update = () => setDark(prefersDark());
    const observer = new MutationObserver(update);
    observer.observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
    const media = window.matchMedia?.("(prefers-color-scheme: dark)");
    media?.addEventListener("change", update);
    return () => {
      observer.disconnect();
      media?.removeEventListener("change", update);
    };
  }, []);
  return dark;
}

/** Split view needs room: below this width the toggle is off and the view is unified. */
const SPLIT_MIN_WIDTH = 900;

/** The patch as coloured lines: what a file shows if the viewer cannot render it. */
function PlainPatch({ patch }: { patch: string }) {
  const lines = parsePatch(patch).flatMap((section) => section.lines);
  return (
    <pre className="plain-patch">
      {lines.map((line, index) => (
        // biome-ignore lint/suspicious/noArrayIndexKey: lines of a patch never reorder
        <span key={index} className={`plain-patch-line plain-patch-line--${line.kind}`}>
          {line.text}
          {"\n"}
        </span>
      ))}
    </pre>
  );
}

/** Keeps one file's rendering failure inside that file: it falls back to the plain patch. */
class FileBoundary extends Component<{ patch: string; children: ReactNode }, { failed: boolean }> {
  override state = { failed: false };
  static getDerivedStateFromError() {
    return { failed: true };
  }
  override render() {
    return this.state.failed ? <PlainPatch patch={this.props.patch} /> : this.props.children;
  }
}

const FileDiff = memo(function FileDiff({ entry, mode, dark }: { entry: DiffFileEntry; mode: Mode; dark: boolean }) {
  const highlight = entry.lines <= LARGE_FILE_LINES * 5;
  const lang = languageOfPath(entry.path);
  // Only the hunks are known (no file contents): the viewer shows the changed lines and their context.
  const data = useMemo(
    () => ({
      oldFile: { fileName: entry.path, fileLang: lang },
      newFile: { fileName: entry.path, fileLang: lang },
      hunks: [entry.patch],
    }),
    [entry, lang],
  );
  if (entry.binary) return <p className="muted diff-note">Binary file — no text diff.</p>;
  if (!entry.patch) return <p className="muted diff-note">No textual changes (mode or rename only).</p>;
  return (
    <DiffView
      data={data}
      diffViewMode={mode === "split" ? DiffModeEnum.Split : DiffModeEnum.Unified}
      diffViewTheme={dark ? "dark" : "light"}
      diffViewHighlight={highlight}
      diffViewWrap={false}
      diffViewFontSize={13}
    />
  );
});

export interface ChangesPanelProps {
  diff: DiffResponse;
}

export default function ChangesPanel({ diff }: ChangesPanelProps) {
  const entries = useMemo(() => diffEntries(diff), [diff]);
  const tree = useMemo<TreeNode>(() => buildTree(entries), [entries]);
  const [mode, setMode] = useState<Mode>(readMode);
  const [open, setOpen] = useState<Record<string, boolean>>({});
  const [wide, setWide] = useState(() => window.innerWidth >= SPLIT_MIN_WIDTH);
  const dark = useDarkTheme();
  const scroller = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const onResize = () => setWide(window.innerWidth >= SPLIT_MIN_WIDTH);
    window.addEventListener("resize", onResize);
    return () => window.removeEventListener("resize", onResize);
  }, []);
  const shownMode: Mode = wide ? mode : "unified";

  const isOpen = (entry: DiffFileEntry) => open[entry.path] ?? entry.lines <= LARGE_FILE_LINES;
  const virtualizer = useVirtualizer({
    count: entries.length,
    getScrollElement: () => scroller.current,
    estimateSize: (index) => {
      const entry = entries[index]!;
      return isOpen(entry) ? 44 + Math.min(entry.lines, 2000) * 20 : 44;
    },
    overscan: 3,
    getItemKey: (index) => entries[index]!.path,
  });

  const changeMode = (next: Mode) => {
    setMode(next);
    try {
      localStorage.setItem(MODE_KEY, next);
    } catch {
      // not kept: the choice lasts for this page
    }
  };
  const totals = { add: tree.additions, del: tree.deletions };

  return (
    <div className="changes">
      <div className="changes-toolbar">
        <span className="changes-totals">
          {entries.length} file{entries.length === 1 ? "" : "s"} · <span className="diff-add">+{totals.add}</span>{" "}
          <span className="diff-del">−{totals.del}</span>
        </span>
        <fieldset className="segmented" disabled={!wide}>
          <legend className="visually-hidden">Diff layout</legend>
          {(["unified", "split"] as const).map((value) => (
            <label key={value} className={shownMode === value ? "segmented-on" : undefined}>
              <input
                type="radio"
                name="diff-mode"
                value={value}
                checked={shownMode === value}
                onChange={() => changeMode(value)}
              />
              {value === "unified" ? "Unified" : "Split"}
            </label>
          ))}
        </fieldset>
      </div>
      <div className="changes-body">
        <FileTree
          tree={tree}
          large={entries.length > 200}
          onSelect={(index) => {
            const entry = entries[index]!;
            setOpen((o) => ({ ...o, [entry.path]: true }));
            virtualizer.scrollToIndex(index, { align: "start" });
          }}
        />
        <div className="diff-scroll" ref={scroller} data-testid="diff-scroll">
          <div className="diff-virtual" style={{ height: virtualizer.getTotalSize() }}>
            {virtualizer.getVirtualItems().map((item) => {
              const entry = entries[item.index]!;
              const expanded = isOpen(entry);
              return (
                <section
                  key={item.key}
                  data-index={item.index}
                  ref={virtualizer.measureElement}
                  className="diff-file"
                  data-path={entry.path}
                  style={{ transform: `translateY(${item.start}px)` }}
                  aria-label={entry.path}
                >
                  <header className="diff-file-header">
                    <button
                      type="button"
                      className="diff-file-toggle"
                      aria-expanded={expanded}
                      onClick={() => setOpen((o) => ({ ...o, [entry.path]: !expanded }))}
                    >
                      <span aria-hidden="true">{expanded ? "▾" : "▸"}</span>
                      <code className="diff-file-path">{entry.path}</code>
                    </button>
                    <span className="diff-file-counts">
                      <span className="diff-add">+{entry.additions}</span>{" "}
                      <span className="diff-del">−{entry.deletions}</span>
                    </span>
                  </header>
                  {expanded ? (
                    <div className="diff-file-body">
                      <FileBoundary patch={entry.patch}>
                        <FileDiff entry={entry} mode={shownMode} dark={dark} />
                      </FileBoundary>
                    </div>
                  ) : (
                    entry.lines > LARGE_FILE_LINES && (
                      <p className="muted diff-note">
                        Large change ({entry.lines.toLocaleString("en")} lines) —{" "}
                        <button
                          type="button"
                          className="link-button"
                          onClick={() => setOpen((o) => ({ ...o, [entry.path]: true }))}
                        >
                          show the diff
                        </button>
                      </p>
                    )
                  )}
                </section>
              );
            })}
          </div>
        </div>
      </div>
    </div>
  );
}
