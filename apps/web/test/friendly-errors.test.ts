import { describe, expect, it } from "vitest";
import { friendlyFieldError } from "../src/friendly-errors";

describe("validation messages for people", () => {
  it.each([
    [
      "repoUrl",
      "repoUrl: repoUrl must be a git URL (https, ssh, git, file) or an absolute path",
      /^Enter a git URL .* absolute path/,
    ],
    ["repoUrl", "repoUrl is required", /^Enter the repository/],
    ["message", "message is required", /^Write what the agent should do/],
    ["baseBranch", "baseBranch is not a valid branch name", /^This is not a valid branch name/],
    ["title", "Too big: expected string to have <=200 characters", /^Keep it under 200 characters/],
  ] as const)("%s: %s", (field, raw, friendly) => {
    expect(friendlyFieldError(field, raw)).toMatch(friendly);
  });

  it("keeps the branch the server could not find", () => {
    expect(friendlyFieldError("baseBranch", 'branch "dev" does not exist in /repo')).toBe(
      'This branch does not exist in the repository. ("dev")',
    );
  });

  it("shows an unknown message as the server wrote it, without the field prefix", () => {
    expect(friendlyFieldError("model", "model: the vendor refused it")).toBe("The vendor refused it");
  });
});
