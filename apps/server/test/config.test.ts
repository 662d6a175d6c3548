import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config";

describe("configuration from the environment", () => {
  it("has the SPEC defaults", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 3000,
      host: "127.0.0.1",
      mode: "local",
      vmProvider: "process",
      cleanupDelayMs: 600_000,
      cleanupIntervalMs: 60_000,
      agent: "shell",
    });
    expect(config.databaseUrl).toBeUndefined();
  });

  it("accepts firecracker as an alias of remote", () => {
    expect(loadConfig({ AGENT_MODE: "firecracker" }).mode).toBe("remote");
  });

  it.each([
    [{ PORT: "eighty" }, "PORT"],
    [{ PORT: "70000" }, "PORT"],
    [{ AGENT_MODE: "cloud" }, "AGENT_MODE"],
    [{ VM_PROVIDER: "docker" }, "VM_PROVIDER"],
    [{ TASK_CLEANUP_DELAY_MS: "-5" }, "TASK_CLEANUP_DELAY_MS"],
    [{ TASK_CLEANUP_INTERVAL_MS: "1.5" }, "TASK_CLEANUP_INTERVAL_MS"],
    [{ DATABASE_URL: "mysql://x" }, "DATABASE_URL"],
    [{ AGENT: "robot" }, "AGENT"],
    [{ AGENT: "llm" }, "AGENT"],
    [{ AGENT: "command" }, "AGENT_COMMAND"],
    [{ LLM_PROVIDER: "openai" }, "LLM_MODEL"],
    [{ LLM_PROVIDER: "openai-compatible", LLM_MODEL: "m" }, "LLM_BASE_URL"],
    [{ LLM_PROVIDER: "anthropic", LLM_MODEL: "m" }, "ANTHROPIC_API_KEY"],
    [{ HOST: "0.0.0.0" }, "API_TOKEN"],
  ])("refuses %j naming %s", (env, variable) => {
    let error: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
    expect((error as Error).message).toContain(variable);
  });

  it("picks the llm agent when a model is configured", () => {
    const config = loadConfig({
      LLM_PROVIDER: "openai-compatible",
      LLM_MODEL: "qwen",
      LLM_BASE_URL: "http://127.0.0.1:1/v1",
    });
    expect(config.agent).toBe("llm");
    expect(config.llm).toEqual({ provider: "openai-compatible", model: "qwen", baseUrl: "http://127.0.0.1:1/v1" });
  });

  it("listens beyond loopback only with an API token", () => {
    expect(loadConfig({ HOST: "0.0.0.0", API_TOKEN: "s3cret" }).apiToken).toBe("s3cret");
  });
});
