/**
 * The application shell: header, theme, API-token prompt, server
 * configuration and the two routes.
 */
import type { ConfigResponse } from "@repo/types";
import { useEffect, useState } from "react";
import { api, ConfigContext } from "./api";
import { useAuth } from "./api/auth";
import { ThemeToggle } from "./components/theme-toggle";
import { TokenPrompt } from "./components/token-prompt";
import { TaskListPage } from "./pages/task-list-page";
import { TaskPage } from "./pages/task-page";
import { Link, useRoute } from "./router";

const CONFIG_RETRY_MS = 3_000;

/** GET /api/config, retried until it answers (the server may still be starting, or want a token). */
function useServerConfig(): ConfigResponse | null {
  const [config, setConfig] = useState<ConfigResponse | null>(null);
  useEffect(() => {
    let cancelled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      try {
        const loaded = await api.getConfig();
        if (!cancelled) setConfig(loaded);
      } catch {
        if (!cancelled) timer = setTimeout(load, CONFIG_RETRY_MS);
      }
    };
    void load();
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, []);
  return config;
}

export function App() {
  const route = useRoute();
  const auth = useAuth();
  const config = useServerConfig();

  useEffect(() => {
    if (route.name !== "task") document.title = "Umbra";
  }, [route.name]);

  return (
    <ConfigContext.Provider value={config}>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="app-header" inert={auth.required}>
        <Link href="/" className="brand">
          <span className="brand-mark" aria-hidden="true" />
          Umbra
        </Link>
        <span className="muted app-mode">{config ? `${config.mode} mode · ${config.agent} agent` : "connecting…"}</span>
        <ThemeToggle />
      </header>
      <main id="main" tabIndex={-1} inert={auth.required}>
        {route.name === "tasks" && <TaskListPage key={auth.token ?? ""} />}
        {route.name === "task" && <TaskPage key={`${route.taskId}:${auth.token ?? ""}`} taskId={route.taskId} />}
        {route.name === "not-found" && (
          <div className="page">
            <h1>Page not found</h1>
            <Link href="/">Go to the task list</Link>
          </div>
        )}
      </main>
      {auth.required && <TokenPrompt hadToken={auth.token !== null} />}
    </ConfigContext.Provider>
  );
}
