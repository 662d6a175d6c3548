/**
 * Light / dark / system theme. "System" follows prefers-color-scheme; the
 * choice is kept in localStorage and applied as data-theme on <html>.
 */
import { useEffect, useState } from "react";

type Theme = "system" | "light" | "dark";
const STORAGE_KEY = "umbra.theme";
const NEXT: Record<Theme, Theme> = { system: "light", light: "dark", dark: "system" };
const LABELS: Record<Theme, string> = { system: "System theme", light: "Light theme", dark: "Dark theme" };
const ICONS: Record<Theme, string> = { system: "◐", light: "☀", dark: "☾" };

function readTheme(): Theme {
  try {
    const stored = localStorage.getItem(STORAGE_KEY);
    return stored === "light" || stored === "dark" ? stored : "system";
  } catch {
    return "system";
  }
}

export function applyTheme(theme: Theme = readTheme()): void {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
}

export function ThemeToggle() {
  const [theme, setTheme] = useState<Theme>(readTheme);
  useEffect(() => {
    applyTheme(theme);
    try {
      if (theme === "system") localStorage.removeItem(STORAGE_KEY);
      else localStorage.setItem(STORAGE_KEY, theme);
    } catch {
      // not persisted; the choice still holds for this page
    }
  }, [theme]);
  return (
    <button
      type="button"
      className="button button--ghost theme-toggle"
      onClick={() => setTheme(NEXT[theme])}
      aria-label={`${LABELS[theme]} (switch to ${LABELS[NEXT[theme]].toLowerCase()})`}
      title={`${LABELS[theme]} — click to switch`}
    >
      <span aria-hidden="true">{ICONS[theme]}</span>
    </button>
  );
}
