/**
 * A repository's environment sets its sandboxes' egress policy: each of its
 * `network` and `allowedDomains` replaces the server's when set, and an
 * environment that sets neither leaves the provider's default in place.
 */
import { describe, expect, it } from "vitest";
import type { Environment } from "../src/environments/environment-store";
import { sandboxNetwork } from "../src/environments/task-environment";

const SERVER = { mode: "allowlist" as const, allowedDomains: ["api.anthropic.com", "registry.npmjs.org"] };

function environment(fields: Partial<Environment>): Environment {
  const at = new Date("2026-01-01T00:00:00Z");
  return {
    repoUrl: "https://example.com/acme/app.git",
    setupScript: null,
    env: {},
    network: null,
    allowedDomains: null,
    agentSecrets: [],
    cache: true,
    createdAt: at,
    updatedAt: at,
    ...fields,
  };
}

describe("a sandbox's egress policy from its repository's environment", () => {
  it("is the provider's default when there is no environment or it sets neither field", () => {
    expect(sandboxNetwork(null, SERVER)).toBeUndefined();
    expect(sandboxNetwork(environment({ setupScript: "npm ci" }), SERVER)).toBeUndefined();
  });

  it("takes the environment's allowlist in place of the server's, keeping the server's mode", () => {
    expect(sandboxNetwork(environment({ allowedDomains: ["127.0.0.1:4873"] }), SERVER)).toEqual({
      mode: "allowlist",
      allowedDomains: ["127.0.0.1:4873"],
    });
  });

  it("takes the environment's mode, keeping the server's allowlist", () => {
    expect(sandboxNetwork(environment({ network: "off" }), SERVER)).toEqual({
      mode: "off",
      allowedDomains: ["api.anthropic.com", "registry.npmjs.org"],
    });
  });

  it("takes both when the environment sets both", () => {
    expect(sandboxNetwork(environment({ network: "on", allowedDomains: [] }), SERVER)).toEqual({
      mode: "on",
      allowedDomains: [],
    });
  });
});
