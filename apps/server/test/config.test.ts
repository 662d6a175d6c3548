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

  it("confines sandboxes by default: allowlist egress and the SPEC's limits", () => {
    const { sandbox } = loadConfig({});
    expect(sandbox.network.mode).toBe("allowlist");
    expect(sandbox.network.allowedDomains).toEqual(
      expect.arrayContaining(["api.anthropic.com", "api.openai.com", "registry.npmjs.org", "pypi.org"]),
    );
    expect(sandbox.limits).toEqual({ memoryMb: 2048, pids: 512, cpus: 1, diskMb: 10240 });
  });

  it("allows the configured model endpoint instead of the vendor's host, port included", () => {
    const { sandbox } = loadConfig({ ANTHROPIC_BASE_URL: "http://127.0.0.1:4010" });
    expect(sandbox.network.allowedDomains).toContain("127.0.0.1:4010");
    expect(sandbox.network.allowedDomains).not.toContain("api.anthropic.com");
  });

  it("takes the allowlist, network mode and limits from SANDBOX_*", () => {
    const { sandbox } = loadConfig({
      SANDBOX_NETWORK: "on",
      SANDBOX_ALLOWED_DOMAINS: "pypi.org, *.github.com 127.0.0.1:8080",
      SANDBOX_MEMORY_MB: "1024",
      SANDBOX_PIDS: "256",
      SANDBOX_CPUS: "0.5",
      SANDBOX_DISK_MB: "2048",
    });
    expect(sandbox).toEqual({
      network: { mode: "on", allowedDomains: ["pypi.org", "*.github.com", "127.0.0.1:8080"] },
      limits: { memoryMb: 1024, pids: 256, cpus: 0.5, diskMb: 2048 },
    });
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

  it("serves the pods' egress proxy on all addresses, port 3128, unless K8S_EGRESS_LISTEN says otherwise", () => {
    expect(loadConfig({}).kubernetes.egressListen).toEqual({ host: "0.0.0.0", port: 3128 });
    expect(loadConfig({ K8S_EGRESS_LISTEN: "8128" }).kubernetes.egressListen).toEqual({ host: "0.0.0.0", port: 8128 });
    expect(loadConfig({ K8S_EGRESS_LISTEN: "10.0.0.7:3128" }).kubernetes.egressListen).toEqual({
      host: "10.0.0.7",
      port: 3128,
    });
    expect(loadConfig({ K8S_EGRESS_LISTEN: "[::]:3128" }).kubernetes.egressListen).toEqual({ host: "::", port: 3128 });
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
    [{ SANDBOX_NETWORK: "maybe" }, "SANDBOX_NETWORK"],
    [{ SANDBOX_ALLOWED_DOMAINS: "pypi.org, https://example.com" }, "SANDBOX_ALLOWED_DOMAINS"],
    [{ SANDBOX_MEMORY_MB: "12" }, "SANDBOX_MEMORY_MB"],
    [{ SANDBOX_PIDS: "many" }, "SANDBOX_PIDS"],
    [{ SANDBOX_CPUS: "0" }, "SANDBOX_CPUS"],
    [{ SANDBOX_DISK_MB: "-1" }, "SANDBOX_DISK_MB"],
    [{ K8S_EGRESS_PROXY: "umbra-egress:3128" }, "K8S_EGRESS_PROXY"],
    [{ K8S_EGRESS_LISTEN: "0.0.0.0:proxy" }, "K8S_EGRESS_LISTEN"],
    [{ K8S_EGRESS_LISTEN: "99999" }, "K8S_EGRESS_LISTEN"],
    [{ AGENT: "claude-code" }, "ANTHROPIC_API_KEY"],
    [{ AGENT: "codex" }, "OPENAI_API_KEY"],
    [{ ANTHROPIC_BASE_URL: "not a url" }, "ANTHROPIC_BASE_URL"],
    [{ OPENAI_BASE_URL: "ftp://example.com/v1" }, "OPENAI_BASE_URL"],
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

  it("runs Claude Code or Codex as the default agent when its key is set", () => {
    expect(loadConfig({ AGENT: "claude-code", ANTHROPIC_API_KEY: "k" }).agent).toBe("claude-code");
    expect(loadConfig({ AGENT: "codex", OPENAI_API_KEY: "k" }).agent).toBe("codex");
  });

  it("reads the vendors' keys, endpoints and the CLIs' executables", () => {
    const config = loadConfig({
      ANTHROPIC_API_KEY: "ka",
      ANTHROPIC_BASE_URL: "http://127.0.0.1:8080/",
      OPENAI_API_KEY: "ko",
      OPENAI_BASE_URL: "http://127.0.0.1:9090/v1",
      CLAUDE_CODE_BIN: "/opt/claude",
      CODEX_BIN: "codex",
    });
    expect(config.anthropic).toEqual({ apiKey: "ka", baseUrl: "http://127.0.0.1:8080" });
    expect(config.openai).toEqual({ apiKey: "ko", baseUrl: "http://127.0.0.1:9090/v1" });
    expect(config.agentBinaries).toEqual({ claudeCode: "/opt/claude", codex: "codex" });
  });

  it("points the llm agent at the vendor's endpoint when LLM_BASE_URL is unset", () => {
    const anthropic = loadConfig({
      LLM_PROVIDER: "anthropic",
      LLM_MODEL: "claude-x",
      ANTHROPIC_API_KEY: "ka",
      ANTHROPIC_BASE_URL: "http://127.0.0.1:8080",
    });
    // Anthropic's base URL has no /v1; the AI SDK's provider wants it.
    expect(anthropic.llm?.baseUrl).toBe("http://127.0.0.1:8080/v1");
    const openai = loadConfig({ LLM_MODEL: "gpt-x", OPENAI_BASE_URL: "http://127.0.0.1:9090/v1" });
    expect(openai.llm).toMatchObject({ provider: "openai", baseUrl: "http://127.0.0.1:9090/v1" });
    const explicit = loadConfig({
      LLM_MODEL: "gpt-x",
      LLM_BASE_URL: "http://127.0.0.1:1/v1",
      OPENAI_BASE_URL: "http://127.0.0.1:9090/v1",
    });
    expect(explicit.llm?.baseUrl).toBe("http://127.0.0.1:1/v1");
  });
});
