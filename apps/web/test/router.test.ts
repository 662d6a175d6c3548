import { describe, expect, it } from "vitest";
import { matchRoute, taskPath } from "../src/router";

describe("routes", () => {
  it.each([
    ["/", { name: "tasks" }],
    ["", { name: "tasks" }],
    ["/tasks/abc-123", { name: "task", taskId: "abc-123" }],
    ["/tasks/abc-123/", { name: "task", taskId: "abc-123" }],
    ["/tasks", { name: "not-found" }],
    ["/elsewhere", { name: "not-found" }],
  ])("%s → %o", (path, route) => {
    expect(matchRoute(path)).toEqual(route);
  });

  it("builds task paths that round-trip", () => {
    expect(matchRoute(taskPath("a b/c"))).toEqual({ name: "task", taskId: "a b/c" });
  });
});
