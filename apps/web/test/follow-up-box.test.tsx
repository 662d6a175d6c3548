// @vitest-environment jsdom
import type { TaskDto } from "@repo/types";
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FollowUpBox, followUpBlockReason } from "../src/components/follow-up-box";

afterEach(cleanup);

type Task = Pick<TaskDto, "status" | "initStatus">;

function setup(task: Task, onSend = vi.fn(async (_message: string) => {})) {
  render(<FollowUpBox task={task} onSend={onSend} />);
  return {
    onSend,
    textarea: screen.getByLabelText("Follow-up message") as HTMLTextAreaElement,
    button: screen.getByRole("button", { name: "Send" }) as HTMLButtonElement,
  };
}

describe("FollowUpBox", () => {
  it.each([
    [{ status: "INITIALIZING", initStatus: "CREATE_VM" } as Task, /workspace is being prepared/],
    [{ status: "RUNNING", initStatus: "ACTIVE" } as Task, /agent is working/],
  ])("is disabled with a visible reason while the task is %o", (task, reason) => {
    const { textarea, button } = setup(task);
    expect(textarea.disabled).toBe(true);
    expect(button.disabled).toBe(true);
    const shown = screen.getByTestId("follow-up-reason");
    expect(shown.textContent).toMatch(reason);
    expect(textarea.getAttribute("aria-describedby")).toContain(shown.id);
  });

  it.each(["COMPLETED", "STOPPED", "FAILED", "ARCHIVED"] as const)("accepts a follow-up when %s", (status) => {
    const { textarea, button } = setup({ status, initStatus: status === "ARCHIVED" ? "INACTIVE" : "ACTIVE" });
    expect(textarea.disabled).toBe(false);
    expect(button.disabled).toBe(false);
    expect(screen.queryByTestId("follow-up-reason")).toBeNull();
    expect(followUpBlockReason({ status, initStatus: "ACTIVE" })).toBeNull();
  });

  it("tells that sending re-creates an archived workspace", () => {
    setup({ status: "ARCHIVED", initStatus: "INACTIVE" });
    expect(screen.getByText(/re-creates the workspace/)).toBeTruthy();
  });

  it("sends the trimmed message on Ctrl+Enter and clears the box", async () => {
    const { textarea, onSend } = setup({ status: "COMPLETED", initStatus: "ACTIVE" });
    fireEvent.change(textarea, { target: { value: "  echo more >> hello.txt \n" } });
    await act(async () => {
      fireEvent.keyDown(textarea, { key: "Enter", ctrlKey: true });
    });
    expect(onSend).toHaveBeenCalledWith("echo more >> hello.txt");
    expect(textarea.value).toBe("");
  });

  it("sends on Cmd+Enter and with the button", async () => {
    const { textarea, button, onSend } = setup({ status: "STOPPED", initStatus: "ACTIVE" });
    fireEvent.change(textarea, { target: { value: "one" } });
    await act(async () => {
      fireEvent.keyDown(textarea, { key: "Enter", metaKey: true });
    });
    fireEvent.change(textarea, { target: { value: "two" } });
    await act(async () => {
      fireEvent.click(button);
    });
    expect(onSend.mock.calls).toEqual([["one"], ["two"]]);
  });

  it("does not send a plain Enter (it is a newline)", () => {
    const { textarea, onSend } = setup({ status: "COMPLETED", initStatus: "ACTIVE" });
    fireEvent.change(textarea, { target: { value: "x" } });
    fireEvent.keyDown(textarea, { key: "Enter" });
    expect(onSend).not.toHaveBeenCalled();
  });

  it("refuses an empty message with an error next to the field", async () => {
    const { button, onSend } = setup({ status: "COMPLETED", initStatus: "ACTIVE" });
    await act(async () => {
      fireEvent.click(button);
    });
    expect(onSend).not.toHaveBeenCalled();
    expect(screen.getByRole("alert").textContent).toBe("message is required");
  });

  it("shows the server's refusal and keeps the text", async () => {
    const onSend = vi.fn(async () => {
      throw new Error("task abc is RUNNING; wait for it to finish or stop it");
    });
    const { textarea, button } = setup({ status: "COMPLETED", initStatus: "ACTIVE" }, onSend);
    fireEvent.change(textarea, { target: { value: "again" } });
    await act(async () => {
      fireEvent.click(button);
    });
    expect(screen.getByRole("alert").textContent).toMatch(/RUNNING/);
    expect(textarea.value).toBe("again");
  });
});
