/**
 * The application shell: header (mode, notifications, theme), API-token
 * prompt, the server configuration (GET /api/config through the query
 * cache) and the two routes. The task list and the task page are plain
 * components; the cache keeps their data across navigation.
 */
import { useQueryClient } from "@tanstack/react-query";
import { useEffect } from "react";
import { ConfigContext } from "./api";
import { useAuth } from "./api/auth";
import { useConfigQuery } from "./api/queries";
import { NotificationToggle } from "./components/notification-toggle";
import { ThemeToggle } from "./components/theme-toggle";
import { TokenPrompt } from "./components/token-prompt";
import { TaskListPage } from "./pages/task-list-page";
import { TaskPage } from "./pages/task-page";
import { Link, useRoute } from "./router";
import { setPageTitle, useTurnNotifications } from "./turn-notifications";

export function App() {
  const route = useRoute();
  const auth = useAuth();
  const client = useQueryClient();
  const config = useConfigQuery().data ?? null;
  useTurnNotifications(client);

  // A new token may open what the old one could not: ask again for everything.
  useEffect(() => {
    if (auth.token !== null && !auth.required) void client.invalidateQueries();
  }, [auth.token, auth.required, client]);

  useEffect(() => {
    if (route.name !== "task") setPageTitle("Umbra");
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
        <NotificationToggle />
        <ThemeToggle />
      </header>
      <main id="main" tabIndex={-1} inert={auth.required}>
        {route.name === "tasks" && <TaskListPage />}
        {route.name === "task" && <TaskPage key={route.taskId} taskId={route.taskId} />}
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
