/**
 * Where the task's work went (SPEC §5 `delivery`): the pushed branch and its
 * commit, the pull request and its state, or why delivery failed and when it
 * is tried again — with "Open pull request" when the server can open one now
 * and a download of the branch as patches. Renders nothing for a server that
 * does not report delivery.
 */
import { useState } from "react";
import { errorText } from "../api";
import type { Delivery } from "../api/schemas";
import { deliveryStateText, pullRequestText, retryText } from "../delivery";
import { useNow } from "../hooks/use-now";

export interface DeliveryPanelProps {
  delivery: Delivery | null | undefined;
  /** The task is busy: no pull request while the agent works. */
  busy: boolean;
  /** The server has a forge for pull requests (false hides the button; the server has the last word). */
  offersPullRequests?: boolean;
  onOpenPullRequest: () => Promise<void>;
  onDownloadPatch: () => Promise<void>;
}

export function DeliveryPanel({
  delivery,
  busy,
  offersPullRequests = true,
  onOpenPullRequest,
  onDownloadPatch,
}: DeliveryPanelProps) {
  const [pending, setPending] = useState<"pr" | "patch" | null>(null);
  const [error, setError] = useState<string | null>(null);
  const now = useNow(1000, Boolean(delivery?.nextRetryAt));
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
  // The server pushes the branch first, so a task whose push is still pending or failed may open one too.
  const canOpenPr = offersPullRequests && !pr && delivery.state !== "conflict" && !busy;
  const retry = delivery.error ? retryText(delivery.nextRetryAt, now) : null;
  return (
    <section className="delivery" aria-label="Delivery" data-testid="delivery">
      <div className="delivery-line">
        <span className={`delivery-state delivery-state--${delivery.state}`}>{deliveryStateText(delivery)}</span>
        {delivery.remoteBranch && delivery.mode !== "none" && (
          <code className="branch" title="Remote branch">
            {delivery.remoteBranch}
          </code>
        )}
        {delivery.pushedSha && (
          <code className="muted" title={delivery.pushedSha}>
            {delivery.pushedSha.slice(0, 8)}
          </code>
        )}
        {pr && (
          <a href={pr.url} target="_blank" rel="noopener noreferrer" className={`pr-link pr-link--${pr.state}`}>
            {pullRequestText(pr)}
          </a>
        )}
      </div>
      {delivery.error && (
        <p className="field-error" data-testid="delivery-error">
          {delivery.error}
          {retry && <span className="delivery-retry"> · {retry}</span>}
        </p>
      )}
      <div className="delivery-actions">
        {canOpenPr && (
          <button
            type="button"
            className="button button--small button--primary"
            disabled={pending !== null}
            onClick={() => void run("pr", onOpenPullRequest)}
          >
            {pending === "pr" ? "Creating…" : "Create pull request"}
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
