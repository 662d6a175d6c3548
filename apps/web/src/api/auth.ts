/**
 * The optional API token (SPEC §4 API_TOKEN). It is kept in localStorage and
 * sent as `Authorization: Bearer` on every request and as `auth.token` in the
 * socket handshake. When the server answers 401 the app asks for it.
 */
import { useSyncExternalStore } from "react";

const STORAGE_KEY = "umbra.apiToken";

interface AuthState {
  token: string | null;
  /** The server refused the current token (or its absence). */
  required: boolean;
}

let state: AuthState = { token: readStoredToken(), required: false };
const listeners = new Set<() => void>();

function readStoredToken(): string | null {
  try {
    return globalThis.localStorage?.getItem(STORAGE_KEY) || null;
  } catch {
    return null;
  }
}

function setState(next: AuthState): void {
  state = next;
  for (const listener of listeners) listener();
}

export function getToken(): string | null {
  return state.token;
}

export function setToken(token: string | null): void {
  try {
    if (token) localStorage.setItem(STORAGE_KEY, token);
    else localStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage may be unavailable (private mode); the token still lives for this page
  }
  setState({ token, required: false });
}

/** Called when the server answered 401: the UI shows the token prompt. */
export function requireToken(): void {
  if (!state.required) setState({ ...state, required: true });
}

export function subscribeAuth(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function useAuth(): AuthState {
  return useSyncExternalStore(
    subscribeAuth,
    () => state,
    () => state,
  );
}
