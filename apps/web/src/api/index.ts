/**
 * The app's API client, wired to the token store, and the server
 * configuration (GET /api/config) that pages share.
 */
import type { ConfigResponse } from "@repo/types";
import { createContext, useContext } from "react";
import { getToken, requireToken } from "./auth";
import { createApiClient } from "./client";

export const api = createApiClient({ getToken, onUnauthorized: requireToken });

export const ConfigContext = createContext<ConfigResponse | null>(null);

/** The server's configuration, or null while it loads. */
export function useConfig(): ConfigResponse | null {
  return useContext(ConfigContext);
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
