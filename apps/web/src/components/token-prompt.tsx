/**
 * Asks for the API token after the server answered 401. The token is kept in
 * localStorage; saving it retries the socket and lets pages refetch.
 */
import { type FormEvent, useEffect, useId, useRef, useState } from "react";
import { setToken } from "../api/auth";

export function TokenPrompt({ hadToken }: { hadToken: boolean }) {
  const [value, setValue] = useState("");
  const id = useId();
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    if (value.trim()) setToken(value.trim());
  };
  return (
    <div className="overlay">
      <form
        className="card token-prompt"
        role="dialog"
        aria-modal="true"
        aria-labelledby={`${id}-title`}
        onSubmit={onSubmit}
      >
        <h2 id={`${id}-title`}>API token required</h2>
        <p id={`${id}-desc`}>
          {hadToken
            ? "The server refused the saved token. Enter the current one."
            : "This server needs an API token (its API_TOKEN setting)."}
        </p>
        <label htmlFor={`${id}-token`}>API token</label>
        <input
          ref={input}
          id={`${id}-token`}
          type="password"
          autoComplete="current-password"
          value={value}
          onChange={(event) => setValue(event.target.value)}
          aria-describedby={`${id}-desc`}
        />
        <div className="form-footer">
          <button type="submit" className="button button--primary" disabled={!value.trim()}>
            Save token
          </button>
        </div>
      </form>
    </div>
  );
}
