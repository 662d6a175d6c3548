// @vitest-environment jsdom
import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Delivery } from "../src/api/schemas";
import { DeliveryPanel } from "../src/components/delivery-panel";

afterEach(cleanup);

function setup(delivery: Delivery | null, busy = false) {
  const onOpenPullRequest = vi.fn(async () => {});
  const onDownloadPatch = vi.fn(async () => {});
  const { container } = render(
    <DeliveryPanel
      delivery={delivery}
      busy={busy}
      onOpenPullRequest={onOpenPullRequest}
      onDownloadPatch={onDownloadPatch}
    />,
  );
  return { container, onOpenPullRequest, onDownloadPatch };
}

describe("DeliveryPanel", () => {
  it("renders nothing for a server that does not report delivery", () => {
    expect(setup(null).container.innerHTML).toBe("");
  });

  it("shows a pushed branch and offers to open a pull request", () => {
    const { onOpenPullRequest } = setup({
      mode: "pull-request",
      state: "pushed",
      remoteBranch: "umbra/fix-login",
      pushedSha: "0123456789abcdef",
      error: null,
      pullRequest: null,
    });
    expect(screen.getByTestId("delivery").textContent).toContain("Pushed");
    expect(screen.getByTestId("delivery").textContent).toContain("umbra/fix-login");
    expect(screen.getByTestId("delivery").textContent).toContain("01234567");
    fireEvent.click(screen.getByRole("button", { name: "Open pull request" }));
    expect(onOpenPullRequest).toHaveBeenCalledOnce();
  });

  it("links an open pull request and does not offer a second one", () => {
    setup({
      mode: "pull-request",
      state: "pushed",
      remoteBranch: "umbra/x",
      pullRequest: { url: "https://forge.example/acme/web/pull/7", number: 7, state: "open", draft: true },
    });
    const link = screen.getByRole("link", { name: "#7 · draft" });
    expect(link.getAttribute("href")).toBe("https://forge.example/acme/web/pull/7");
    expect(screen.queryByRole("button", { name: "Open pull request" })).toBeNull();
  });

  it("says why a push failed and offers no pull request while the agent works", () => {
    setup({ mode: "branch", state: "conflict", remoteBranch: "umbra/x", error: "non-fast-forward" }, true);
    expect(screen.getByTestId("delivery").textContent).toContain("Push refused");
    expect(screen.getByTestId("delivery").textContent).toContain("non-fast-forward");
    expect(screen.queryByRole("button", { name: "Open pull request" })).toBeNull();
  });

  it("downloads the patch on request", () => {
    const { onDownloadPatch } = setup({ mode: "none", state: "pending" });
    expect(screen.getByTestId("delivery").textContent).toContain("Delivery off");
    fireEvent.click(screen.getByRole("button", { name: "Download patch" }));
    expect(onDownloadPatch).toHaveBeenCalledOnce();
  });
});
