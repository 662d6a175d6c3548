/**
 * A task's status as a badge. Every TaskStatus has its own colour and its own
 * icon shape, so the two never have to be told apart by colour alone.
 */
import { type TaskStatus, TaskStatus as TS } from "@repo/types";
import type { ReactNode, SVGProps } from "react";

export const STATUS_LABELS: Record<TaskStatus, string> = {
  INITIALIZING: "Initializing",
  RUNNING: "Running",
  STOPPED: "Stopped",
  COMPLETED: "Completed",
  FAILED: "Failed",
  ARCHIVED: "Archived",
};

/** A decorative 16×16 icon; the text next to it carries the meaning. */
function Icon({ status, children, ...props }: SVGProps<SVGSVGElement> & { status: TaskStatus; children: ReactNode }) {
  return (
    <svg
      aria-hidden="true"
      focusable="false"
      width={14}
      height={14}
      viewBox="0 0 16 16"
      className={`status-icon status-icon--${status.toLowerCase()}`}
      {...props}
    >
      {children}
    </svg>
  );
}

export function StatusIcon({ status }: { status: TaskStatus }) {
  switch (status) {
    case TS.INITIALIZING:
      return (
        <Icon status={status} fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round">
          <path d="M8 2a6 6 0 1 1-6 6" />
        </Icon>
      );
    case TS.RUNNING:
      return (
        <Icon status={status} fill="currentColor">
          <path d="M4 2.5v11l9-5.5z" />
        </Icon>
      );
    case TS.STOPPED:
      return (
        <Icon status={status} fill="currentColor">
          <rect x="3" y="3" width="10" height="10" rx="1.5" />
        </Icon>
      );
    case TS.COMPLETED:
      return (
        <Icon
          status={status}
          fill="none"
          stroke="currentColor"
          strokeWidth="2.4"
          strokeLinecap="round"
          strokeLinejoin="round"
        >
          <path d="M3 8.5l3.2 3.2L13 4.8" />
        </Icon>
      );
    case TS.FAILED:
      return (
        <Icon status={status} fill="none" stroke="currentColor" strokeWidth="2.4" strokeLinecap="round">
          <path d="M4 4l8 8M12 4l-8 8" />
        </Icon>
      );
    case TS.ARCHIVED:
      return (
        <Icon status={status} fill="none" stroke="currentColor" strokeWidth="1.6" strokeLinejoin="round">
          <rect x="1.8" y="2.5" width="12.4" height="3.5" rx="0.8" />
          <path d="M3 6v7.5h10V6M6.3 8.8h3.4" strokeLinecap="round" />
        </Icon>
      );
  }
}

export function StatusBadge({ status }: { status: TaskStatus }) {
  return (
    <span className={`badge badge--${status.toLowerCase()}`} data-status={status}>
      <StatusIcon status={status} />
      <span>{STATUS_LABELS[status]}</span>
    </span>
  );
}
