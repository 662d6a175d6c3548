/**
 * Where the task's work went (SPEC §5 `delivery`): the pushed branch, the
 * pull request and its state, or why delivery failed — with "Open pull
 * request" when the server can open one now and a download of the branch as
 * patches. Renders nothing for a server that does not report delivery.
 */
import { useState } from "react";
import { errorText } from "../api";
import type { Delivery } from "../api/schemas";

const STATE_WORDS: Record<Delivery["state"], string> = {
  pending: "Not pushed yet",
  pushed: "Pushed",
  failed: "Push failed",
  conflict: "Push refused: the remote branch has other commits",
};

export interface DeliveryPanelProps {
  delivery: Delivery | null | undefined;
  /** The task is busy: no pull request while the agent works. */
  busy: boolean;
  onOpenPullRequest: () => Promise<void>;
  onDownloadPatch: () => Promise<void>;
}

export function DeliveryPanel({ delivery, busy, onOpenPullRequest, onDownloadPatch }: DeliveryPanelProps) {
  const [pending, setPending] = useState<"pr" | "patch" | null>(null);
  const [error, setError] = useState<string | null>(null);
  const run = async (what: "pr" | "patch", action: () => Promise<void>) => {
    setPending(what);
    setError(null);
    try {
      await action();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setPending(null);
    }
  };
  if (!delivery) return null;
  const pr = delivery.pullRequest ?? null;
  const canOpenPr = delivery.mode !== "none" && !pr && delivery.state === "pushed" && !busy;
  return (
    <section className="delivery" aria-label="Delivery" data-testid="delivery">
      <div className="delivery-line">
        <span className={`delivery-state delivery-state--${delivery.state}`}>
          {delivery.mode === "none" ? "Delivery off: the branch stays on this server" : STATE_WORDS[delivery.state]}
        </span>
        {delivery.remoteBranch && delivery.mode !== "none" && (
          <code className="branch" title="Remote branch">
            {delivery.remoteBranch}
          </code>
        )}
        {delivery.pushedSha && <code className="muted">{delivery.pushedSha.slice(0, 8)}</code>}
        {pr && (
          <a href={pr.url} target="_blank" rel="noopener noreferrer" className={`pr-link pr-link--${pr.state}`}>
            #{pr.number} · {pr.draft ? "draft" : pr.state}
          </a>
        )}
      </div>
      {delivery.error && <p className="field-error">{delivery.error}</p>}
      <div className="delivery-actions">
        {canOpenPr && (
          <button
            type="button"
            className="button button--small button--primary"
            disabled={pending !== null}
            onClick={() => void run("pr", onOpenPullRequest)}
          >
            {pending === "pr" ? "Opening…" : "Open pull request"}
          </button>
        )}
        <button
          type="button"
          className="button button--small"
          disabled={pending !== null}
          onClick={() => void run("patch", onDownloadPatch)}
        >
          {pending === "patch" ? "Preparing…" : "Download patch"}
        </button>
      </div>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}
