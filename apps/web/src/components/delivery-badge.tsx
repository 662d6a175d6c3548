/**
 * A task's delivery in a word for the task list: its pull request (a link,
 * with its state), or whether the branch was pushed, failed or conflicts —
 * with the reason as the tooltip. Nothing for a task that delivers nothing,
 * has not pushed yet, or comes from a server that does not report delivery.
 */
import type { Delivery } from "../api/schemas";
import { deliveryBadgeText } from "../delivery";

export function DeliveryBadge({ delivery }: { delivery: Delivery | null | undefined }) {
  const text = deliveryBadgeText(delivery);
  if (!delivery || !text) return null;
  const pr = delivery.pullRequest;
  if (pr) {
    return (
      <a
        className={`delivery-badge pr-link pr-link--${pr.state}`}
        href={pr.url}
        target="_blank"
        rel="noopener noreferrer"
        data-testid="delivery-badge"
      >
        {text}
      </a>
    );
  }
  return (
    <span
      className={`delivery-badge delivery-badge--${delivery.state}`}
      title={delivery.error ?? undefined}
      data-testid="delivery-badge"
    >
      {text}
    </span>
  );
}
