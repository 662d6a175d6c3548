/**
 * The task page's status line. The label and detail are announced politely
 * when they change; the warm-window countdown ticks every second and sits
 * outside the live region so screen readers are not flooded.
 */
import { useConfig } from "../api";
import { useNow } from "../hooks/use-now";
import { describeStatus, type StatusTask } from "../status-display";
import { StatusIcon } from "./status-badge";

export function StatusLine({ task, reinitializing }: { task: StatusTask; reinitializing: boolean }) {
  const config = useConfig();
  const ticking = task.scheduledCleanupAt !== null;
  const now = useNow(1000, ticking);
  const status = describeStatus(task, config, now, { reinitializing });
  return (
    <div className={`status-line tone-${status.tone}`} data-testid="status-line">
      <StatusIcon status={task.status} />
      <div className="status-line-text">
        <p role="status" aria-live="polite" aria-atomic="true">
          <strong className="status-label">{status.label}</strong>
          {status.detail && <span className="status-detail"> — {status.detail}</span>}
        </p>
        {status.countdown && (
          <p className="status-countdown" data-testid="warm-countdown">
            {status.countdown.text}
          </p>
        )}
      </div>
    </div>
  );
}
