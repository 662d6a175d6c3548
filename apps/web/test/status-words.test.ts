import { lastOutcome, statusWords } from "@repo/types";
import { describe, expect, it } from "vitest";
import { describeStatus, stopDetail } from "../src/status-display";

const ARCHIVED = { status: "ARCHIVED" as const };

describe("words that tell the truth", () => {
  it.each([
    [{ ...ARCHIVED, lastOutcome: "COMPLETED" as const }, "Completed · archived"],
    [{ ...ARCHIVED, lastOutcome: "FAILED" as const }, "Failed · archived"],
    [{ ...ARCHIVED, lastOutcome: "STOPPED" as const }, "Stopped · archived"],
    [{ ...ARCHIVED, lastOutcome: null }, "Archived"],
    [{ status: "RUNNING" as const, lastOutcome: "COMPLETED" as const }, "Running"],
  ])("a task %o reads %s", (task, words) => {
    expect(statusWords(task)).toBe(words);
  });

  it("has no outcome for a task that is still busy", () => {
    expect(lastOutcome({ status: "RUNNING", lastOutcome: "FAILED" })).toBeNull();
  });

  it("says what stopped a task: the user, or the server's own reason", () => {
    expect(stopDetail("stopped by user")).toBe("Stopped by request.");
    expect(stopDetail("server shutting down")).toBe("server shutting down.");
    const crashed = describeStatus(
      {
        status: "STOPPED",
        initStatus: "ACTIVE",
        mode: "local",
        scheduledCleanupAt: null,
        errorMessage:
          "The server stopped while the agent was working; the turn was interrupted. Send a follow-up to continue.",
        initializationError: null,
      },
      { mode: "local" },
      0,
    );
    expect(crashed.detail).toBe(
      "The server stopped while the agent was working; the turn was interrupted. Send a follow-up to continue.",
    );
  });
});
