import { useEffect, useState } from "react";

/** The current time, refreshed every `intervalMs` while `active`. */
export function useNow(intervalMs: number, active = true): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs, active]);
  return now;
}

/** Runs `callback` when the window regains focus or the tab becomes visible. */
export function useOnFocus(callback: () => void): void {
  useEffect(() => {
    const onVisible = () => {
      if (document.visibilityState === "visible") callback();
    };
    window.addEventListener("focus", callback);
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      window.removeEventListener("focus", callback);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, [callback]);
}
