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

  it("guards the control plane by default: loopback names only, no private repository hosts, local repositories on loopback", () => {
    expect(loadConfig({})).toMatchObject({
      allowedHosts: [],
      allowedRepoHosts: [],
      allowLocalRepos: true,
      forgeUrls: [],
      output: { messageMaxBytes: 10 * 1024 * 1024, logMaxBytes: 100 * 1024 * 1024 },
    });
    expect(loadConfig({ HOST: "0.0.0.0", API_TOKEN: "t" }).allowLocalRepos).toBe(false);
    expect(loadConfig({ HOST: "::1" }).allowLocalRepos).toBe(true);
  });

  it("reads the allow-lists, the local-repository switch, the forges and the output caps", () => {
    const config = loadConfig({
      HOST: "0.0.0.0",
      API_TOKEN: "t",
      ALLOWED_HOSTS: " umbra.example.com ,*.corp.example,,[::1]:3000 ",
      ALLOWED_REPO_HOSTS: "git.internal,10.0.0.0/8,fd00::/8",
      ALLOW_LOCAL_REPOS: "yes",
      GITHUB_URL: "https://github.example.com",
      GITLAB_URL: "http://10.0.0.9:8080",
      OUTPUT_MESSAGE_MAX_BYTES: "1048576",
      OUTPUT_LOG_MAX_BYTES: "2097152",
    });
    expect(config).toMatchObject({
      allowedHosts: ["umbra.example.com", "*.corp.example", "[::1]:3000"],
      allowedRepoHosts: ["git.internal", "10.0.0.0/8", "fd00::/8"],
      allowLocalRepos: true,
      forgeUrls: ["https://github.example.com", "http://10.0.0.9:8080"],
      output: { messageMaxBytes: 1_048_576, logMaxBytes: 2_097_152 },
    });
    expect(loadConfig({ ALLOW_LOCAL_REPOS: "off" }).allowLocalRepos).toBe(false);
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
    [{ ALLOWED_HOSTS: "umbra.example.com, not a host" }, "ALLOWED_HOSTS"],
    [{ ALLOWED_HOSTS: "https://umbra.example.com/" }, "ALLOWED_HOSTS"],
    [{ ALLOWED_REPO_HOSTS: "10.0.0.0/8, git server" }, "ALLOWED_REPO_HOSTS"],
    [{ ALLOW_LOCAL_REPOS: "maybe" }, "ALLOW_LOCAL_REPOS"],
    [{ GITHUB_URL: "github" }, "GITHUB_URL"],
    [{ GITLAB_URL: "gitlab" }, "GITLAB_URL"],
    [{ OUTPUT_MESSAGE_MAX_BYTES: "10MB" }, "OUTPUT_MESSAGE_MAX_BYTES"],
    [{ OUTPUT_LOG_MAX_BYTES: "12" }, "OUTPUT_LOG_MAX_BYTES"],
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
