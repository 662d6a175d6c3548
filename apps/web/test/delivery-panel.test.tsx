// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Delivery } from "../src/api/schemas";
import { DeliveryBadge } from "../src/components/delivery-badge";
import { DeliveryPanel } from "../src/components/delivery-panel";

afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

function setup(delivery: Delivery | null, busy = false, offersPullRequests = true) {
  const onOpenPullRequest = vi.fn(async () => {});
  const onDownloadPatch = vi.fn(async () => {});
  const { container } = render(
    <DeliveryPanel
      delivery={delivery}
      busy={busy}
      offersPullRequests={offersPullRequests}
      onOpenPullRequest={onOpenPullRequest}
      onDownloadPatch={onDownloadPatch}
    />,
  );
  return { container, onOpenPullRequest, onDownloadPatch };
}

const PUSHED: Delivery = {
  mode: "pull-request",
  state: "pushed",
  remoteBranch: "umbra/fix-login",
  pushedSha: "0123456789abcdef",
  error: null,
  nextRetryAt: null,
  pullRequest: null,
};

describe("DeliveryPanel", () => {
  it("renders nothing for a server that does not report delivery", () => {
    expect(setup(null).container.innerHTML).toBe("");
  });

  it("shows a pushed branch and offers to create a pull request", () => {
    const { onOpenPullRequest } = setup(PUSHED);
    expect(screen.getByTestId("delivery").textContent).toContain("Pushed");
    expect(screen.getByTestId("delivery").textContent).toContain("umbra/fix-login");
    expect(screen.getByTestId("delivery").textContent).toContain("01234567");
    fireEvent.click(screen.getByRole("button", { name: "Create pull request" }));
    expect(onOpenPullRequest).toHaveBeenCalledOnce();
  });

  it("links an open pull request and does not offer a second one", () => {
    setup({
      ...PUSHED,
      remoteBranch: "umbra/x",
      pullRequest: { url: "https://forge.example/acme/web/pull/7", number: 7, state: "open", draft: true },
    });
    const link = screen.getByRole("link", { name: "#7 · draft" });
    expect(link.getAttribute("href")).toBe("https://forge.example/acme/web/pull/7");
    expect(screen.queryByRole("button", { name: "Create pull request" })).toBeNull();
  });

  it("says a merged pull request is merged, even one that was a draft", () => {
    setup({
      ...PUSHED,
      pullRequest: { url: "https://forge.example/acme/web/pull/9", number: 9, state: "merged", draft: true },
    });
    expect(screen.getByRole("link", { name: "#9 · merged" })).toBeTruthy();
  });

  it("says why a push failed and when it is tried again", () => {
    vi.useFakeTimers({ toFake: ["Date", "setInterval", "clearInterval"] });
    vi.setSystemTime(Date.UTC(2030, 0, 1, 12, 0, 0));
    setup({
      ...PUSHED,
      state: "failed",
      pushedSha: null,
      error: "pushing umbra/fix-login failed: Authentication failed",
      nextRetryAt: "2030-01-01T12:00:30.000Z",
    });
    const error = screen.getByTestId("delivery-error");
    expect(screen.getByTestId("delivery").textContent).toContain("Push failed");
    expect(error.textContent).toBe("pushing umbra/fix-login failed: Authentication failed · Next try in 30 s");
    act(() => {
      vi.advanceTimersByTime(20_000);
    });
    expect(error.textContent).toContain("Next try in 10 s");
  });

  it("names the conflicting files and offers no pull request while the agent works", () => {
    setup(
      {
        ...PUSHED,
        mode: "branch",
        state: "conflict",
        error: "commits pushed to umbra/x conflict with the task branch in: src/app.ts",
      },
      true,
    );
    expect(screen.getByTestId("delivery").textContent).toContain(
      "Conflict: commits pushed by others do not merge with the task's",
    );
    expect(screen.getByTestId("delivery-error").textContent).toContain("src/app.ts");
    expect(screen.queryByRole("button", { name: "Create pull request" })).toBeNull();
  });

  it("offers a pull request for a branch not pushed yet, but not without a forge", () => {
    setup({ ...PUSHED, mode: "branch", state: "pending", pushedSha: null });
    expect(screen.getByRole("button", { name: "Create pull request" })).toBeTruthy();
    cleanup();
    setup({ ...PUSHED, mode: "branch", state: "pending", pushedSha: null }, false, false);
    expect(screen.queryByRole("button", { name: "Create pull request" })).toBeNull();
  });

  it("shows the server's reason when creating the pull request fails", async () => {
    const onOpenPullRequest = vi.fn(async () => {
      throw new Error("the task has no changes to propose yet");
    });
    render(
      <DeliveryPanel delivery={PUSHED} busy={false} onOpenPullRequest={onOpenPullRequest} onDownloadPatch={vi.fn()} />,
    );
    fireEvent.click(screen.getByRole("button", { name: "Create pull request" }));
    expect((await screen.findByRole("alert")).textContent).toBe("the task has no changes to propose yet");
  });

  it("downloads the patch on request, also when delivery is off", () => {
    const { onDownloadPatch } = setup({
      ...PUSHED,
      mode: "none",
      state: "pending",
      remoteBranch: null,
      pushedSha: null,
    });
    expect(screen.getByTestId("delivery").textContent).toContain("Delivery off");
    fireEvent.click(screen.getByRole("button", { name: "Download patch" }));
    expect(onDownloadPatch).toHaveBeenCalledOnce();
  });
});

describe("DeliveryBadge", () => {
  it("links the pull request with its state", () => {
    render(
      <DeliveryBadge
        delivery={{
          ...PUSHED,
          pullRequest: { url: "https://forge.example/acme/web/pull/3", number: 3, state: "open", draft: false },
        }}
      />,
    );
    expect(screen.getByRole("link", { name: "PR #3 · open" }).getAttribute("href")).toBe(
      "https://forge.example/acme/web/pull/3",
    );
  });

  it("says when a push failed, with the reason as its tooltip", () => {
    render(<DeliveryBadge delivery={{ ...PUSHED, state: "failed", error: "Connection refused" }} />);
    const badge = screen.getByTestId("delivery-badge");
    expect(badge.textContent).toBe("push failed");
    expect(badge.getAttribute("title")).toBe("Connection refused");
  });

  it("shows nothing for a task that delivers nothing, has not pushed yet, or a server without delivery", () => {
    for (const delivery of [{ ...PUSHED, mode: "none" as const }, { ...PUSHED, state: "pending" as const }, null]) {
      const { container } = render(<DeliveryBadge delivery={delivery} />);
      expect(container.innerHTML).toBe("");
      cleanup();
    }
  });
});
