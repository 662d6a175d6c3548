import { describe, expect, it } from "vitest";
import { archivedWords, describeStatus, lastOutcome, stopDetail } from "../src/status-display";

const ARCHIVED = { status: "ARCHIVED" as const, initializationError: null };

describe("words that tell the truth", () => {
  it.each([
    [{ ...ARCHIVED, errorMessage: null }, "Completed · archived"],
    [{ ...ARCHIVED, errorMessage: "command exited with code 2" }, "Failed · archived"],
    [{ ...ARCHIVED, errorMessage: null, initializationError: "CREATE_VM: no sandbox" }, "Failed · archived"],
    [{ ...ARCHIVED, errorMessage: "stopped by user" }, "Stopped · archived"],
    [
      {
        ...ARCHIVED,
        errorMessage:
          "The server stopped while the agent was working; the turn was interrupted. Send a follow-up to continue.",
      },
      "Stopped · archived",
    ],
  ])("an archived task %o reads %s", (task, words) => {
    expect(archivedWords(task)).toBe(words);
  });

  it("has no outcome for a task that is still busy", () => {
    expect(lastOutcome({ status: "RUNNING", errorMessage: null, initializationError: null })).toBeNull();
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
