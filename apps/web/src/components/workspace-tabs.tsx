/**
 * The task page's work pane: Changes, Files, Terminal and Setup as tabs
 * (WAI-ARIA tabs: arrow keys move between them). The chosen tab is kept in
 * the URL (`?tab=`); until the user picks one, Setup shows while the
 * workspace is being prepared and Changes otherwise.
 *
 * Setup stays mounted while hidden, so its stepper always reflects the live
 * state; Changes stays mounted once opened (the diff viewer is costly to
 * build); Files and Terminal mount when shown.
 */
import { type KeyboardEvent, type ReactNode, useId, useRef, useState } from "react";
import { setSearchParams, useSearchParam } from "../router";

export const TABS = ["changes", "files", "terminal", "setup"] as const;
export type Tab = (typeof TABS)[number];

const LABELS: Record<Tab, string> = { changes: "Changes", files: "Files", terminal: "Terminal", setup: "Setup" };

function isTab(value: string | null): value is Tab {
  return value !== null && (TABS as readonly string[]).includes(value);
}

export interface WorkspaceTabsProps {
  /** The tab shown until the user picks one. */
  defaultTab: Tab;
  /** Small text after a tab's label (a count, a state). */
  badges?: Partial<Record<Tab, string>>;
  render: (tab: Tab) => ReactNode;
}

export function WorkspaceTabs({ defaultTab, badges = {}, render }: WorkspaceTabsProps) {
  const id = useId();
  const chosen = useSearchParam("tab");
  const active: Tab = isTab(chosen) ? chosen : defaultTab;
  const [visited, setVisited] = useState<ReadonlySet<Tab>>(new Set([active]));
  if (!visited.has(active)) setVisited(new Set([...visited, active]));
  const buttons = useRef<Partial<Record<Tab, HTMLButtonElement | null>>>({});

  const select = (tab: Tab, focus = false) => {
    setSearchParams({ tab });
    if (focus) buttons.current[tab]?.focus();
  };
  const onKeyDown = (event: KeyboardEvent) => {
    const index = TABS.indexOf(active);
    const moves: Record<string, number> = { ArrowRight: 1, ArrowLeft: -1, Home: -index, End: TABS.length - 1 - index };
    const move = moves[event.key];
    if (move === undefined) return;
    event.preventDefault();
    select(TABS[(index + move + TABS.length) % TABS.length]!, true);
  };

  const mounted = (tab: Tab) => tab === active || tab === "setup" || (tab === "changes" && visited.has(tab));
  return (
    <div className="workspace-tabs">
      <div className="tablist" role="tablist" aria-label="Workspace" onKeyDown={onKeyDown}>
        {TABS.map((tab) => (
          <button
            key={tab}
            ref={(el) => {
              buttons.current[tab] = el;
            }}
            type="button"
            role="tab"
            id={`${id}-tab-${tab}`}
            aria-selected={tab === active}
            aria-controls={`${id}-panel-${tab}`}
            tabIndex={tab === active ? 0 : -1}
            className="tab"
            onClick={() => select(tab)}
          >
            {LABELS[tab]}
            {badges[tab] && <span className="tab-badge">{badges[tab]}</span>}
          </button>
        ))}
      </div>
      {TABS.map((tab) =>
        mounted(tab) ? (
          <div
            key={tab}
            role="tabpanel"
            id={`${id}-panel-${tab}`}
            aria-labelledby={`${id}-tab-${tab}`}
            className={`tabpanel tabpanel--${tab}`}
            hidden={tab !== active}
            tabIndex={-1}
          >
            {render(tab)}
          </div>
        ) : null,
      )}
    </div>
  );
}
