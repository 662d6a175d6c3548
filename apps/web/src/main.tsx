import { QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { createQueryClient } from "./api/queries";
import { App } from "./app";
import { applyTheme } from "./components/theme-toggle";
import "./styles.css";

applyTheme();
const root = document.getElementById("root");
if (!root) throw new Error("index.html has no #root element");
const queryClient = createQueryClient();
createRoot(root).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <App />
    </QueryClientProvider>
  </StrictMode>,
);
