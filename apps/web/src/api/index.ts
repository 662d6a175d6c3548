/**
 * The app's API client, wired to the token store, and the server
 * configuration (GET /api/config) that pages share.
 */
import { createContext, useContext } from "react";
import { getToken, requireToken } from "./auth";
import { createApiClient } from "./client";
import type { Config } from "./schemas";

export const api = createApiClient({ getToken, onUnauthorized: requireToken });

export const ConfigContext = createContext<Config | null>(null);

/** The server's configuration, or null while it loads. */
export function useConfig(): Config | null {
  return useContext(ConfigContext);
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
