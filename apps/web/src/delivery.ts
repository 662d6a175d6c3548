/**
 * Words for a task's delivery (SPEC §5 `delivery`): where its work went, when
 * a failed push is tried again and what became of its pull request, as the
 * task page, the task list and the new-task form say them. Pure, so the
 * wording is tested without a browser; `now` is passed in.
 */
import type { Delivery, DeliveryMode } from "./api/schemas";

export const DELIVERY_MODE_LABELS: Record<DeliveryMode, string> = {
  none: "Keep on this server",
  branch: "Push the branch",
  "pull-request": "Push and open a draft pull request",
};

const STATE_WORDS: Record<Delivery["state"], string> = {
  pending: "Not pushed yet",
  pushed: "Pushed",
  failed: "Push failed",
  conflict: "Conflict: commits pushed by others do not merge with the task's",
};

/** The delivery's state in a few words. */
export function deliveryStateText(delivery: Delivery): string {
  if (delivery.mode === "none") return "Delivery off: the branch stays on this server";
  return STATE_WORDS[delivery.state];
}

/** "Next try in 30 s" for a scheduled retry; null when none is scheduled. */
export function retryText(nextRetryAt: string | null | undefined, now: number): string | null {
  if (!nextRetryAt) return null;
  const at = Date.parse(nextRetryAt);
  if (Number.isNaN(at)) return null;
  const seconds = Math.ceil((at - now) / 1000);
  if (seconds <= 0) return "Trying again now…";
  if (seconds < 60) return `Next try in ${seconds} s`;
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 60) return `Next try in ${minutes} min`;
  return `Next try at ${new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
}

/** "#7 · draft", "#7 · merged". */
export function pullRequestText(pullRequest: NonNullable<Delivery["pullRequest"]>): string {
  const state = pullRequest.state === "open" && pullRequest.draft ? "draft" : pullRequest.state;
  return `#${pullRequest.number} · ${state}`;
}

/** The list's one word for a delivery; null when there is nothing worth a badge. */
export function deliveryBadgeText(delivery: Delivery | null | undefined): string | null {
  if (!delivery || delivery.mode === "none") return null;
  if (delivery.pullRequest) return `PR ${pullRequestText(delivery.pullRequest)}`;
  switch (delivery.state) {
    case "pushed":
      return "pushed";
    case "failed":
      return "push failed";
    case "conflict":
      return "conflict";
    case "pending":
      return null;
  }
}
