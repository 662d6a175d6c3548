// @vitest-environment jsdom
import type { InitStatus, TaskDto } from "@repo/types";
import { cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { InitStepper } from "../src/components/init-stepper";
import { EMPTY_PROGRESS, type LiveInitProgress } from "../src/init-progress";

afterEach(cleanup);

const REMOTE: InitStatus[] = ["CREATE_VM", "WAIT_VM_READY", "VERIFY_VM_WORKSPACE", "INDEX_REPOSITORY"];
const LOCAL: InitStatus[] = ["PREPARE_WORKSPACE", "INDEX_REPOSITORY"];

type StepperTask = Pick<TaskDto, "status" | "initStatus" | "initializationError">;

function states(): Record<string, string | null> {
  const items = screen.getAllByRole("listitem");
  return Object.fromEntries(items.map((li) => [li.getAttribute("data-step"), li.getAttribute("data-state")]));
}

function renderStepper(
  task: StepperTask,
  options: { steps?: InitStatus[]; progress?: LiveInitProgress; reinitializing?: boolean; onRetry?: () => void } = {},
) {
  return render(
    <InitStepper
      steps={options.steps ?? REMOTE}
      task={task}
      progress={options.progress ?? EMPTY_PROGRESS}
      reinitializing={options.reinitializing ?? false}
      {...(options.onRetry ? { onRetry: options.onRetry } : {})}
    />,
  );
}

describe("InitStepper", () => {
  it("shows every step pending before the first step starts", () => {
    renderStepper({ status: "INITIALIZING", initStatus: "INACTIVE", initializationError: null });
    expect(screen.getByRole("heading", { name: "Initializing workspace" })).toBeTruthy();
    expect(states()).toEqual({
      CREATE_VM: "pending",
      WAIT_VM_READY: "pending",
      VERIFY_VM_WORKSPACE: "pending",
      INDEX_REPOSITORY: "pending",
    });
  });

  it("marks earlier steps done, the running step current and later steps pending", () => {
    renderStepper({ status: "INITIALIZING", initStatus: "WAIT_VM_READY", initializationError: null });
    expect(states()).toEqual({
      CREATE_VM: "done",
      WAIT_VM_READY: "current",
      VERIFY_VM_WORKSPACE: "pending",
      INDEX_REPOSITORY: "pending",
    });
    const current = screen.getAllByRole("listitem").find((li) => li.getAttribute("aria-current") === "step");
    expect(current?.textContent).toContain("Waiting for sandbox");
    expect(current?.textContent).toContain("in progress");
  });

  it("uses the display names of the local steps", () => {
    renderStepper(
      { status: "INITIALIZING", initStatus: "INDEX_REPOSITORY", initializationError: null },
      { steps: LOCAL },
    );
    expect(states()).toEqual({ PREPARE_WORKSPACE: "done", INDEX_REPOSITORY: "current" });
    expect(screen.getByText("Preparing workspace")).toBeTruthy();
    expect(screen.getByText("Indexing repository")).toBeTruthy();
  });

  it("moves ahead on a live step-start that arrives before the status update", () => {
    renderStepper(
      { status: "INITIALIZING", initStatus: "CREATE_VM", initializationError: null },
      { progress: { ...EMPTY_PROGRESS, current: "VERIFY_VM_WORKSPACE", completed: ["CREATE_VM", "WAIT_VM_READY"] } },
    );
    expect(states()).toEqual({
      CREATE_VM: "done",
      WAIT_VM_READY: "done",
      VERIFY_VM_WORKSPACE: "current",
      INDEX_REPOSITORY: "pending",
    });
  });

  it("labels a re-initialization as such", () => {
    renderStepper(
      { status: "INITIALIZING", initStatus: "CREATE_VM", initializationError: null },
      { reinitializing: true },
    );
    expect(screen.getByRole("heading", { name: "Re-initializing workspace" })).toBeTruthy();
  });

  it("shows all steps done once the workspace is active", () => {
    renderStepper({ status: "COMPLETED", initStatus: "ACTIVE", initializationError: null });
    expect(screen.getByRole("heading", { name: "Workspace ready" })).toBeTruthy();
    expect(new Set(Object.values(states()))).toEqual(new Set(["done"]));
  });

  it("shows all steps pending for an archived task", () => {
    renderStepper({ status: "ARCHIVED", initStatus: "INACTIVE", initializationError: null });
    expect(screen.getByRole("heading", { name: "Workspace archived" })).toBeTruthy();
    expect(new Set(Object.values(states()))).toEqual(new Set(["pending"]));
  });

  it("marks the step named in initializationError as failed, with the error and a Retry action", () => {
    const onRetry = vi.fn();
    renderStepper(
      {
        status: "FAILED",
        initStatus: "INACTIVE",
        initializationError: "VERIFY_VM_WORKSPACE: /workspace is not a git checkout",
      },
      { onRetry },
    );
    expect(screen.getByRole("heading", { name: "Workspace initialization failed" })).toBeTruthy();
    expect(states()).toEqual({
      CREATE_VM: "done",
      WAIT_VM_READY: "done",
      VERIFY_VM_WORKSPACE: "failed",
      INDEX_REPOSITORY: "pending",
    });
    const failed = screen.getAllByRole("listitem").find((li) => li.getAttribute("data-state") === "failed")!;
    expect(within(failed).getByRole("alert").textContent).toContain("/workspace is not a git checkout");
    fireEvent.click(within(failed).getByRole("button", { name: "Retry" }));
    expect(onRetry).toHaveBeenCalledOnce();
  });

  it("recognises the failing step by its display name too", () => {
    renderStepper(
      { status: "FAILED", initStatus: "INACTIVE", initializationError: "Indexing repository failed: disk full" },
      { steps: LOCAL },
    );
    expect(states()).toEqual({ PREPARE_WORKSPACE: "done", INDEX_REPOSITORY: "failed" });
  });

  it("takes the failing step from a live init-error when the message does not name it", () => {
    renderStepper(
      { status: "FAILED", initStatus: "INACTIVE", initializationError: "connection refused" },
      { progress: { current: "WAIT_VM_READY", completed: ["CREATE_VM"], failedStep: "WAIT_VM_READY", error: "x" } },
    );
    expect(states()).toMatchObject({ CREATE_VM: "done", WAIT_VM_READY: "failed", VERIFY_VM_WORKSPACE: "pending" });
    expect(screen.getByRole("alert").textContent).toContain("connection refused");
  });

  it("still shows the error and Retry when no step can be identified", () => {
    renderStepper(
      { status: "FAILED", initStatus: "INACTIVE", initializationError: "something broke" },
      { onRetry: () => {} },
    );
    expect(new Set(Object.values(states()))).toEqual(new Set(["pending"]));
    expect(screen.getByRole("alert").textContent).toContain("something broke");
    expect(screen.getByRole("button", { name: "Retry" })).toBeTruthy();
  });

  it("does not treat an agent failure on an active workspace as a failed initialization", () => {
    renderStepper({ status: "FAILED", initStatus: "ACTIVE", initializationError: null });
    expect(new Set(Object.values(states()))).toEqual(new Set(["done"]));
    expect(screen.queryByRole("alert")).toBeNull();
  });
});
