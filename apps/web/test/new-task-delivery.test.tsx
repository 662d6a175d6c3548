// @vitest-environment jsdom
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigContext } from "../src/api";
import type { Config } from "../src/api/schemas";
import { NewTaskForm, type NewTaskValues, validateNewTask } from "../src/components/new-task-form";
import { deliveryBadgeText, retryText } from "../src/delivery";

afterEach(cleanup);

const FORGES: Config = {
  mode: "local",
  steps: ["PREPARE_WORKSPACE", "INDEX_REPOSITORY"],
  cleanupDelayMs: 600_000,
  agent: "shell",
  delivery: { mode: "branch", forges: [{ kind: "github", url: "https://ghe.example.test" }] },
};
const NO_FORGES: Config = { ...FORGES, delivery: { mode: "branch", forges: [] } };
const NO_DELIVERY: Config = { ...FORGES, delivery: undefined };

const VALUES: NewTaskValues = {
  repoUrl: "https://ghe.example.test/acme/web.git",
  baseBranch: "",
  title: "",
  message: "Fix the login form",
  agent: "",
  model: "",
  delivery: "",
};

function formWith(config: Config | null) {
  return (
    <QueryClientProvider client={new QueryClient()}>
      <ConfigContext.Provider value={config}>
        <NewTaskForm onCreated={() => {}} />
      </ConfigContext.Provider>
    </QueryClientProvider>
  );
}

function renderForm(config: Config | null) {
  return render(formWith(config));
}

describe("the delivery choice on the new-task form", () => {
  it("offers the server default and the three modes", () => {
    renderForm(FORGES);
    const select = screen.getByLabelText("Delivery") as HTMLSelectElement;
    expect([...select.options].map((o) => [o.value, o.textContent, o.disabled])).toEqual([
      ["", "Server default (push the branch)", false],
      ["none", "Keep on this server", false],
      ["branch", "Push the branch", false],
      ["pull-request", "Push and open a draft pull request", false],
    ]);
    expect(select.value).toBe("");
  });

  it("does not offer pull requests on a server without GitHub or GitLab", () => {
    renderForm(NO_FORGES);
    const option = screen.getByRole("option", { name: /Push and open a draft pull request/ }) as HTMLOptionElement;
    expect(option.disabled).toBe(true);
    expect(option.textContent).toBe("Push and open a draft pull request — no GitHub or GitLab configured");
  });

  it("is not shown by a server that does not deliver", () => {
    renderForm(NO_DELIVERY);
    expect(screen.queryByLabelText("Delivery")).toBeNull();
  });

  it("sends the chosen delivery, and none for the server default", () => {
    expect(validateNewTask({ ...VALUES, delivery: "pull-request" }, FORGES).body).toEqual({
      repoUrl: "https://ghe.example.test/acme/web.git",
      message: "Fix the login form",
      delivery: "pull-request",
    });
    expect(validateNewTask(VALUES, FORGES).body).toEqual({
      repoUrl: "https://ghe.example.test/acme/web.git",
      message: "Fix the login form",
    });
    expect(validateNewTask({ ...VALUES, delivery: "none" }, NO_DELIVERY).body).not.toHaveProperty("delivery");
  });

  it("refuses a pull request on a server without a forge, at the field", () => {
    expect(validateNewTask({ ...VALUES, delivery: "pull-request" }, NO_FORGES)).toEqual({
      body: null,
      errors: { delivery: "This server has no GitHub or GitLab configured for pull requests." },
    });
  });
});

describe("the new-task form before the server's configuration has arrived", () => {
  const AGENTS: Config = {
    ...FORGES,
    agents: [
      { kind: "shell", available: true },
      { kind: "claude-code", available: false, reason: "no ANTHROPIC_API_KEY" },
    ],
  };

  it("keeps the agent, model and delivery fields in place, disabled, until it arrives", () => {
    const view = renderForm(null);
    const agent = screen.getByLabelText("Agent") as HTMLSelectElement;
    const delivery = screen.getByLabelText("Delivery") as HTMLSelectElement;
    expect([
      agent.disabled,
      delivery.disabled,
      (screen.getByLabelText("Model (optional)") as HTMLInputElement).disabled,
    ]).toEqual([true, true, true]);
    expect([...agent.options].map((o) => o.textContent)).toEqual(["Loading…"]);
    expect([...delivery.options].map((o) => o.textContent)).toEqual(["Loading…"]);
    const before = [...view.container.querySelectorAll(".field")].map((f) => f.className);

    view.rerender(formWith(AGENTS));
    expect([...view.container.querySelectorAll(".field")].map((f) => f.className)).toEqual(before);
    expect((screen.getByLabelText("Agent") as HTMLSelectElement).disabled).toBe(false);
    expect([...(screen.getByLabelText("Agent") as HTMLSelectElement).options].map((o) => o.textContent)).toEqual([
      "Server default (shell)",
      "shell",
      "claude-code — no ANTHROPIC_API_KEY",
    ]);
    expect((screen.getByLabelText("Delivery") as HTMLSelectElement).disabled).toBe(false);
  });

  it("drops them for a server that lists no agents and names no delivery", () => {
    renderForm({ ...NO_DELIVERY, agents: undefined });
    expect(screen.queryByLabelText("Agent")).toBeNull();
    expect(screen.queryByLabelText("Delivery")).toBeNull();
  });
});

describe("delivery words", () => {
  const now = Date.UTC(2030, 0, 1, 12, 0, 0);
  it("counts down to the next try in seconds, then minutes", () => {
    expect(retryText("2030-01-01T12:00:30.000Z", now)).toBe("Next try in 30 s");
    expect(retryText("2030-01-01T12:04:00.000Z", now)).toBe("Next try in 4 min");
    expect(retryText("2030-01-01T11:59:00.000Z", now)).toBe("Trying again now…");
    expect(retryText(null, now)).toBeNull();
    expect(retryText("not a date", now)).toBeNull();
  });

  it("gives the list a word for each delivered state", () => {
    const base = { mode: "branch" as const, remoteBranch: "umbra/t", pushedSha: null, error: null, pullRequest: null };
    expect(deliveryBadgeText({ ...base, state: "pushed" })).toBe("pushed");
    expect(deliveryBadgeText({ ...base, state: "failed" })).toBe("push failed");
    expect(deliveryBadgeText({ ...base, state: "conflict" })).toBe("conflict");
    expect(deliveryBadgeText({ ...base, state: "pending" })).toBeNull();
    expect(
      deliveryBadgeText({
        ...base,
        state: "pushed",
        pullRequest: { url: "https://x/pull/4", number: 4, state: "closed", draft: false },
      }),
    ).toBe("PR #4 · closed");
  });
});
