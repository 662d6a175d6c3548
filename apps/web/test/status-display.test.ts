import { INIT_STATUSES, type InitStatus, TASK_STATUSES, type TaskMode, type TaskStatus } from "@repo/types";
import { describe, expect, it } from "vitest";
import { describeStatus, formatCountdown, type StatusTask } from "../src/status-display";

const NOW = Date.parse("2030-01-01T12:00:00.000Z");
/** A cleanup deadline 9 minutes 59.5 seconds after NOW. */
const DEADLINE = new Date(NOW + 599_500).toISOString();

function task(status: TaskStatus, initStatus: InitStatus, mode: TaskMode, extra: Partial<StatusTask> = {}): StatusTask {
  return {
    status,
    initStatus,
    mode,
    scheduledCleanupAt: DEADLINE,
    errorMessage: status === "FAILED" ? "agent exited with code 2" : null,
    initializationError: null,
    ...extra,
  };
}

const ARCHIVED_SENTENCE = "The workspace was archived. Sending a message re-creates it.";

interface Expected {
  label: string;
  tone: string;
  detail: string | null;
  countdown: string | null;
}

/**
 * The expected status line for every status × initStatus × mode, written out
 * as the product rules read (with a cleanup deadline set on every row, so the
 * countdown appears only where the rules allow it).
 */
function expected(status: TaskStatus, init: InitStatus, mode: TaskMode): Expected {
  const warm = mode === "remote" && init === "ACTIVE" ? "Workspace kept warm for 9:59" : null;
  const stepText: Record<TaskMode, Partial<Record<InitStatus, string>>> = {
    local: {
      PREPARE_WORKSPACE: "Step 1 of 3: Preparing workspace",
      INSTALL_DEPENDENCIES: "Step 2 of 3: Installing dependencies",
      INDEX_REPOSITORY: "Step 3 of 3: Indexing repository",
      CREATE_VM: "Creating sandbox",
      WAIT_VM_READY: "Waiting for sandbox",
      VERIFY_VM_WORKSPACE: "Verifying workspace",
    },
    remote: {
      PREPARE_WORKSPACE: "Preparing workspace",
      CREATE_VM: "Step 1 of 5: Creating sandbox",
      WAIT_VM_READY: "Step 2 of 5: Waiting for sandbox",
      VERIFY_VM_WORKSPACE: "Step 3 of 5: Verifying workspace",
      INSTALL_DEPENDENCIES: "Step 4 of 5: Installing dependencies",
      INDEX_REPOSITORY: "Step 5 of 5: Indexing repository",
    },
  };
  switch (status) {
    case "INITIALIZING":
      return {
        label: "Initializing workspace",
        tone: "progress",
        detail:
          init === "INACTIVE"
            ? "Waiting for the first step to start"
            : init === "ACTIVE"
              ? "Workspace ready — starting the agent"
              : stepText[mode][init]!,
        countdown: null,
      };
    case "RUNNING":
      return { label: "Agent working…", tone: "progress", detail: null, countdown: null };
    case "COMPLETED": {
      const stepName = stepText.remote[init]?.replace(/^Step \d of \d: /, "");
      return {
        label: "Ready for follow-up",
        tone: "success",
        detail:
          init === "INACTIVE"
            ? ARCHIVED_SENTENCE
            : init === "ACTIVE"
              ? mode === "remote"
                ? "The workspace is warm: a follow-up starts at once."
                : "The workspace is ready: a follow-up starts at once."
              : `Workspace: ${stepName}.`,
        countdown: warm,
      };
    }
    case "STOPPED":
      return {
        label: "Stopped",
        tone: "warning",
        detail:
          init === "INACTIVE"
            ? `Stopped by request. ${ARCHIVED_SENTENCE}`
            : "Stopped by request. Send a follow-up to continue.",
        countdown: warm,
      };
    case "FAILED":
      return { label: "Failed", tone: "danger", detail: "agent exited with code 2", countdown: warm };
    case "ARCHIVED":
      return {
        label: "Workspace archived",
        tone: "neutral",
        detail: "Sending a message re-creates it.",
        countdown: null,
      };
  }
}

const MODES: TaskMode[] = ["local", "remote"];
const combinations = TASK_STATUSES.flatMap((status) =>
  INIT_STATUSES.flatMap((init) => MODES.map((mode) => [status, init, mode] as const)),
);

describe("describeStatus", () => {
  it("covers all 6 × 8 × 2 combinations", () => {
    expect(combinations).toHaveLength(96);
  });

  it.each(combinations)("%s / %s in %s mode reads as the rules say", (status, init, mode) => {
    const result = describeStatus(task(status, init, mode), { mode }, NOW);
    const want = expected(status, init, mode);
    expect(result.label).toBe(want.label);
    expect(result.tone).toBe(want.tone);
    expect(result.detail).toBe(want.detail);
    expect(result.countdown?.text ?? null).toBe(want.countdown);
  });

  it("labels a provisioning run of a task that had a workspace as a re-initialization", () => {
    const result = describeStatus(task("INITIALIZING", "CREATE_VM", "remote"), { mode: "remote" }, NOW, {
      reinitializing: true,
    });
    expect(result.label).toBe("Re-initializing workspace");
    expect(result.detail).toBe("Step 1 of 5: Creating sandbox");
  });

  it("uses the configured steps for the step counter", () => {
    const result = describeStatus(
      task("INITIALIZING", "INDEX_REPOSITORY", "local"),
      { mode: "local", steps: ["PREPARE_WORKSPACE", "INDEX_REPOSITORY"] },
      NOW,
    );
    expect(result.detail).toBe("Step 2 of 2: Indexing repository");
  });

  it("shows the initialization error of a task that failed to initialize", () => {
    const failed = task("FAILED", "INACTIVE", "remote", {
      errorMessage: null,
      initializationError: "CREATE_VM: sandbox did not start",
    });
    expect(describeStatus(failed, { mode: "remote" }, NOW).detail).toBe("CREATE_VM: sandbox did not start");
  });

  it("prefers the agent's error over an older initialization error", () => {
    const failed = task("FAILED", "ACTIVE", "local", { errorMessage: "exit 1", initializationError: "old" });
    expect(describeStatus(failed, { mode: "local" }, NOW).detail).toBe("exit 1");
  });

  it("never shows a countdown without a scheduled cleanup", () => {
    const completed = task("COMPLETED", "ACTIVE", "remote", { scheduledCleanupAt: null });
    expect(describeStatus(completed, { mode: "remote" }, NOW).countdown).toBeUndefined();
  });

  it("follows the server's mode, falling back to the task's while the config loads", () => {
    const completed = task("COMPLETED", "ACTIVE", "remote");
    expect(describeStatus(completed, { mode: "local" }, NOW).countdown).toBeUndefined();
    expect(describeStatus(completed, null, NOW).countdown?.text).toBe("Workspace kept warm for 9:59");
  });
});

describe("the warm-window countdown", () => {
  it.each([
    [0, "0:00"],
    [999, "0:00"],
    [1_000, "0:01"],
    [59_999, "0:59"],
    [60_000, "1:00"],
    [61_000, "1:01"],
    [599_999, "9:59"],
    [600_000, "10:00"],
    [3_725_000, "62:05"],
    [-5_000, "0:00"],
  ])("formats %d ms as %s", (ms, text) => {
    expect(formatCountdown(ms)).toBe(text);
  });

  it("counts down as the injected clock advances", () => {
    const completed = task("COMPLETED", "ACTIVE", "remote", {
      scheduledCleanupAt: new Date(NOW + 10 * 60_000).toISOString(),
    });
    const at = (offsetMs: number) => describeStatus(completed, { mode: "remote" }, NOW + offsetMs).countdown;
    expect(at(0)?.text).toBe("Workspace kept warm for 10:00");
    expect(at(1)?.text).toBe("Workspace kept warm for 9:59");
    expect(at(61_000)?.clock).toBe("8:59");
    expect(at(9 * 60_000 + 55_000)?.remainingMs).toBe(5_000);
    expect(at(9 * 60_000 + 55_000)?.text).toBe("Workspace kept warm for 0:05");
  });

  it("says the workspace is being cleaned up once the deadline has passed", () => {
    const completed = task("COMPLETED", "ACTIVE", "remote", { scheduledCleanupAt: new Date(NOW).toISOString() });
    const countdown = describeStatus(completed, { mode: "remote" }, NOW + 3_000).countdown;
    expect(countdown?.remainingMs).toBe(0);
    expect(countdown?.text).toBe("Cleaning up the workspace…");
  });
});
