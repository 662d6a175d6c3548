/**
 * The header's bell: turns browser notifications for ended turns on or off.
 * Turning them on asks the browser for permission; when the browser refuses,
 * the button says so instead of pretending.
 */
import { setNotificationsEnabled, useNotificationsEnabled } from "../turn-notifications";

export function NotificationToggle() {
  const enabled = useNotificationsEnabled();
  if (typeof Notification === "undefined") return null;
  const denied = Notification.permission === "denied";
  const label = denied
    ? "Notifications are blocked by the browser"
    : enabled
      ? "Turn off notifications when a turn ends"
      : "Notify me when a turn ends";
  return (
    <button
      type="button"
      className="button button--ghost notification-toggle"
      aria-pressed={enabled}
      aria-label={label}
      title={label}
      disabled={denied}
      onClick={() => void setNotificationsEnabled(!enabled)}
    >
      <svg
        aria-hidden="true"
        width="16"
        height="16"
        viewBox="0 0 16 16"
        fill="none"
        stroke="currentColor"
        strokeWidth="1.6"
      >
        <path d="M4 11V7a4 4 0 0 1 8 0v4l1.2 1.5H2.8z" strokeLinejoin="round" />
        <path d="M6.5 14a1.6 1.6 0 0 0 3 0" strokeLinecap="round" />
        {!enabled && <path d="M2.5 2.5l11 11" strokeLinecap="round" />}
      </svg>
    </button>
  );
}
