/**
 * Server configuration from the environment (SPEC §4), parsed with zod.
 * An invalid value stops start-up with a message naming the variable.
 */
import { availableParallelism, totalmem } from "node:os";
import { resolve } from "node:path";
import { AGENT_KINDS, type AgentKind, type TaskMode } from "@repo/types";
import { z } from "zod";
import { type DeliveryConfig, DeliveryConfigError, loadDeliveryConfig } from "./delivery/delivery-config";
import {
  defaultAllowedDomains,
  NETWORK_MODES,
  type NetworkPolicy,
  parseEntry,
} from "./execution/vm/egress/egress-policy";
import type { SandboxLimits } from "./execution/vm/process/process-provider";
import type { Secret } from "./utils/redaction";
import { parseSecretsKey } from "./utils/secret-box";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

const optionalString = z
  .string()
  .trim()
  .transform((value) => (value === "" ? undefined : value))
  .optional();

/** A comma-separated list; blanks dropped. */
const list = z
  .string()
  .default("")
  .transform((value) =>
    value
      .split(",")
      .map((item) => item.trim())
      .filter(Boolean),
  );

const flag = z
  .enum(["1", "0", "true", "false", "on", "off", "yes", "no"], { message: "must be 1/0, true/false, on/off or yes/no" })
  .transform((value) => ["1", "true", "on", "yes"].includes(value))
  .optional();

const integer = (fallback: number, min: number) =>
  z
    .string()
    .trim()
    .default(String(fallback))
    .transform((value, ctx) => {
      const parsed = Number(value);
      if (!Number.isInteger(parsed) || parsed < min) {
        ctx.addIssue({ code: "custom", message: `must be an integer ≥ ${min}, got ${JSON.stringify(value)}` });
        return z.NEVER;
      }
      return parsed;
    });

/** An http(s) URL without trailing slashes (clients append their paths). */
const httpUrl = optionalString
  .refine((url) => !url || /^https?:$/.test(URL.parse(url)?.protocol ?? ""), { message: "must be an http(s) URL" })
  .transform((url) => url?.replace(/\/+$/, ""));

const EnvSchema = z.object({
  PORT: integer(3000, 0).refine((port) => port <= 65535, "must be a port number (0-65535)"),
  HOST: z.string().trim().min(1).default("127.0.0.1"),
  DATA_DIR: z.string().trim().min(1).default("./.umbra"),
  DATABASE_URL: optionalString.refine((url) => !url || /^postgres(ql)?:\/\//.test(url), {
    message: "must be a postgres:// or postgresql:// URL",
  }),
  PGLITE_TEMPLATE_DIR: optionalString,
  AGENT_MODE: z
    .enum(["local", "remote", "firecracker"], { message: "must be local, remote or firecracker" })
    .default("local"),
  VM_PROVIDER: z.enum(["process", "kubernetes"], { message: "must be process or kubernetes" }).default("process"),
  TASK_CLEANUP_DELAY_MS: integer(600_000, 0),
  TASK_CLEANUP_INTERVAL_MS: integer(60_000, 100),
  VM_READY_TIMEOUT_MS: integer(60_000, 100),
  HEALTH_CHECK_INTERVAL_MS: integer(30_000, 100),
  OWNER_HEARTBEAT_MS: integer(5_000, 50),
  OWNER_LEASE_MS: integer(30_000, 100),
  SANDBOX_UNREACHABLE_GRACE_MS: integer(6 * 60 * 60_000, 0),
  API_TOKEN: optionalString,
  SECRETS_KEY: optionalString.refine(
    (key) => {
      if (!key) return true;
      try {
        parseSecretsKey(key);
        return true;
      } catch {
        return false;
      }
    },
    { message: "must be 32 bytes, as base64 or hex" },
  ),
  AGENT: z.enum(["auto", ...AGENT_KINDS], { message: `must be auto, ${AGENT_KINDS.join(", ")}` }).default("auto"),
  LLM_PROVIDER: z
    .enum(["openai", "anthropic", "openai-compatible"], { message: "must be openai, anthropic or openai-compatible" })
    .optional(),
  LLM_MODEL: optionalString,
  LLM_BASE_URL: optionalString.refine((url) => !url || URL.canParse(url), { message: "must be a URL" }),
  OPENAI_API_KEY: optionalString,
  ANTHROPIC_API_KEY: optionalString,
  OPENAI_BASE_URL: httpUrl,
  ANTHROPIC_BASE_URL: httpUrl,
  CLAUDE_CODE_BIN: optionalString,
  CODEX_BIN: optionalString,
  AGENT_COMMAND: optionalString,
  SIDECAR_BUNDLE: optionalString,
  SANDBOX_NETWORK: z.enum(NETWORK_MODES, { message: "must be off, allowlist or on" }).default("allowlist"),
  SANDBOX_ALLOWED_DOMAINS: optionalString,
  SANDBOX_MEMORY_MB: integer(2048, 64),
  SANDBOX_PIDS: integer(512, 16),
  SANDBOX_CPUS: z
    .string()
    .trim()
    .default("1")
    .transform((value, ctx) => {
      const parsed = Number(value);
      if (!Number.isFinite(parsed) || parsed < 0.01 || parsed > 1024) {
        ctx.addIssue({
          code: "custom",
          message: `must be a number of cores (e.g. 0.5, 2), got ${JSON.stringify(value)}`,
        });
        return z.NEVER;
      }
      return parsed;
    }),
  SANDBOX_DISK_MB: integer(10240, 64),
  K8S_NAMESPACE: z.string().default("umbra"),
  K8S_IMAGE: z.string().default("umbra-sidecar:latest"),
  K8S_RUNTIME_CLASS: z.string().default("kata-fc"),
  MAX_ACTIVE_WORKSPACES: integer(defaultMaxActiveWorkspaces(), 1),
  ENVIRONMENT_CACHE_MAX_MB: integer(10_240, 0),
  SETUP_TIMEOUT_MS: integer(1_800_000, 1000),
  K8S_EGRESS_PROXY: optionalString.refine((url) => !url || /^http:\/\/[^/]+:\d+\/?$/.test(url), {
    message: "must be http://<address>:<port> of the in-cluster egress proxy",
  }),
  K8S_EGRESS_LISTEN: z
    .string()
    .default("0.0.0.0:3128")
    .transform((value, ctx) => {
      const match = /^(?:(\[[0-9a-fA-F:.]+\]|[^:\s]+):)?(\d{1,5})$/.exec(value.trim());
      const port = match ? Number(match[2]) : Number.NaN;
      if (!match || port > 65535) {
        ctx.addIssue({ code: "custom", message: `must be [host:]port, got ${JSON.stringify(value)}` });
        return z.NEVER;
      }
      return { host: (match[1] ?? "0.0.0.0").replace(/^\[|\]$/g, ""), port };
    }),
  ALLOWED_HOSTS: list.refine((hosts) => hosts.every(isHostPattern), {
    message: "must be a comma-separated list of host names or addresses (optionally *.domain)",
  }),
  ALLOWED_REPO_HOSTS: list.refine((hosts) => hosts.every(isHostPattern), {
    message: "must be a comma-separated list of host names, addresses or CIDR ranges",
  }),
  ALLOW_LOCAL_REPOS: flag,
  GITHUB_URL: optionalString.refine((url) => !url || URL.canParse(url), { message: "must be a URL" }),
  GITLAB_URL: optionalString.refine((url) => !url || URL.canParse(url), { message: "must be a URL" }),
  OUTPUT_MESSAGE_MAX_BYTES: integer(10 * 1024 * 1024, 1024),
  OUTPUT_LOG_MAX_BYTES: integer(100 * 1024 * 1024, 1024),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export interface LlmConfig {
  provider: "openai" | "anthropic" | "openai-compatible";
  model: string;
  baseUrl?: string;
  apiKey?: string;
}

export interface VendorConfig {
  apiKey?: string;
  /** The vendor's API root; unset = the vendor's own. */
  baseUrl?: string;
}

export interface ServerConfig {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl?: string;
  /** Where new embedded databases are copied from (made there once); unset = each is created from nothing. */
  pgliteTemplateDir?: string;
  mode: TaskMode;
  vmProvider: "process" | "kubernetes";
  /** Warm window after a turn ends, in ms (remote mode). Default 600000. */
  cleanupDelayMs: number;
  /** Backstop poll of the cleanup service, in ms. Default 60000. */
  cleanupIntervalMs: number;
  /** How long WAIT_VM_READY waits for the sidecar, in ms. Default 60000. */
  vmReadyTimeoutMs: number;
  /** Period of the warm-workspace health probe and the orphan sweep, in ms. Default 30000. */
  healthCheckIntervalMs: number;
  /** How often a server renews the leases of the work it runs (and looks for expired ones), in ms. Default 5000. */
  ownerHeartbeatMs: number;
  /** How long a lease holds without renewal before another server takes the work over, in ms. Default 30000. */
  ownerLeaseMs: number;
  /**
   * How long a sandbox that does not answer is kept (and retried) before it is
   * destroyed without saving its uncommitted work, in ms. Default 21600000 (6 h).
   */
  sandboxUnreachableGraceMs: number;
  apiToken?: string;
  /** Key of the secrets store and sealed sandbox tokens (32 bytes, base64 or hex). Default: a key file in DATA_DIR. */
  secretsKey?: string;
  agent: AgentKind;
  llm?: LlmConfig;
  agentCommand?: string;
  /**
   * Most live workspaces (remote mode: sandboxes being made or ACTIVE) at
   * once. Default: one per 2 GiB of this machine's memory (a sandbox's default
   * memory limit), at most 4 per CPU core, at least 1.
   */
  maxActiveWorkspaces: number;
  /** Bound of the environment cache under DATA_DIR, MiB; 0 turns caching off. Default 10240. */
  environmentCacheMaxMb: number;
  /** Longest a setup script may run, ms. Default 1800000 (30 minutes). */
  setupTimeoutMs: number;
  /** ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL (Anthropic's convention: without `/v1`). */
  anthropic: VendorConfig;
  /** OPENAI_API_KEY and OPENAI_BASE_URL (OpenAI's convention: with `/v1`). */
  openai: VendorConfig;
  /** CLAUDE_CODE_BIN / CODEX_BIN; unset = the CLIs installed with the server. */
  agentBinaries: { claudeCode?: string; codex?: string };
  kubernetes: {
    namespace: string;
    image: string;
    runtimeClassName: string;
    egressProxyUrl?: string;
    /** Where the server serves the pods' egress proxy (only with egressProxyUrl set). */
    egressListen: { host: string; port: number };
  };
  /** The built sidecar the `process` provider runs. Default: the `@repo/sidecar/bundle` package export. */
  sidecarBundle?: string;
  /** Every sandbox's egress policy and resource limits (SANDBOX_*). */
  sandbox: { network: NetworkPolicy; limits: SandboxLimits };
  logLevel: string;
  /** DELIVERY, the forges (GITHUB_*, GITLAB_*), MENTION and GIT_CREDENTIALS_FILE. */
  delivery: DeliveryConfig;
  /**
   * Extra Host/Origin names the server answers, besides HOST, localhost,
   * 127.0.0.1 and [::1] (ALLOWED_HOSTS): the DNS-rebinding and cross-site guard.
   */
  allowedHosts: string[];
  /** Repository hosts (names, addresses, CIDR ranges) allowed on loopback/private addresses (ALLOWED_REPO_HOSTS). */
  allowedRepoHosts: string[];
  /** Local paths and file:// as repoUrl (ALLOW_LOCAL_REPOS). Default: on when HOST is loopback. */
  allowLocalRepos: boolean;
  /** The configured forges (GITHUB_URL, GITLAB_URL); their hosts are allowed repository hosts. */
  forgeUrls: string[];
  output: {
    /** Most agent output stored per message, in bytes (OUTPUT_MESSAGE_MAX_BYTES). Default 10 MiB. */
    messageMaxBytes: number;
    /** Cap of a task's full-output log file, in bytes (OUTPUT_LOG_MAX_BYTES). Default 100 MiB. */
    logMaxBytes: number;
  };
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    detail: string,
  ) {
    super(`invalid configuration: ${variable} ${detail}`);
    this.name = "ConfigError";
  }
}

/** Parses the environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(String(issue.path[0] ?? "environment"), issue.message);
  }
  const e = parsed.data;
  const delivery = parseDelivery(env);
  const llm = resolveLlm(e);
  const agent = resolveAgent(e, llm);
  if (e.OWNER_LEASE_MS < 2 * e.OWNER_HEARTBEAT_MS) {
    throw new ConfigError(
      "OWNER_LEASE_MS",
      `must be at least twice OWNER_HEARTBEAT_MS (${e.OWNER_HEARTBEAT_MS}), got ${e.OWNER_LEASE_MS}`,
    );
  }
  if (!LOOPBACK_HOSTS.has(e.HOST) && !e.API_TOKEN) {
    throw new ConfigError("API_TOKEN", `must be set when HOST (${e.HOST}) is not a loopback address`);
  }
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir: resolve(e.DATA_DIR),
    databaseUrl: e.DATABASE_URL,
    pgliteTemplateDir: e.PGLITE_TEMPLATE_DIR ? resolve(e.PGLITE_TEMPLATE_DIR) : undefined,
    mode: e.AGENT_MODE === "local" ? "local" : "remote",
    vmProvider: e.VM_PROVIDER,
    cleanupDelayMs: e.TASK_CLEANUP_DELAY_MS,
    cleanupIntervalMs: e.TASK_CLEANUP_INTERVAL_MS,
    vmReadyTimeoutMs: e.VM_READY_TIMEOUT_MS,
    healthCheckIntervalMs: e.HEALTH_CHECK_INTERVAL_MS,
    ownerHeartbeatMs: e.OWNER_HEARTBEAT_MS,
    ownerLeaseMs: e.OWNER_LEASE_MS,
    sandboxUnreachableGraceMs: e.SANDBOX_UNREACHABLE_GRACE_MS,
    apiToken: e.API_TOKEN,
    secretsKey: e.SECRETS_KEY,
    agent,
    llm,
    agentCommand: e.AGENT_COMMAND,
    anthropic: { apiKey: e.ANTHROPIC_API_KEY, baseUrl: e.ANTHROPIC_BASE_URL },
    openai: { apiKey: e.OPENAI_API_KEY, baseUrl: e.OPENAI_BASE_URL },
    agentBinaries: { claudeCode: e.CLAUDE_CODE_BIN, codex: e.CODEX_BIN },
    kubernetes: {
      namespace: e.K8S_NAMESPACE,
      image: e.K8S_IMAGE,
      runtimeClassName: e.K8S_RUNTIME_CLASS,
      egressProxyUrl: e.K8S_EGRESS_PROXY,
      egressListen: e.K8S_EGRESS_LISTEN,
    },
    sidecarBundle: e.SIDECAR_BUNDLE,
    maxActiveWorkspaces: e.MAX_ACTIVE_WORKSPACES,
    environmentCacheMaxMb: e.ENVIRONMENT_CACHE_MAX_MB,
    setupTimeoutMs: e.SETUP_TIMEOUT_MS,
    sandbox: {
      network: { mode: e.SANDBOX_NETWORK, allowedDomains: resolveAllowedDomains(e) },
      limits: {
        memoryMb: e.SANDBOX_MEMORY_MB,
        pids: e.SANDBOX_PIDS,
        cpus: e.SANDBOX_CPUS,
        diskMb: e.SANDBOX_DISK_MB,
      },
    },
    logLevel: e.LOG_LEVEL,
    delivery,
    allowedHosts: e.ALLOWED_HOSTS,
    allowedRepoHosts: e.ALLOWED_REPO_HOSTS,
    allowLocalRepos: e.ALLOW_LOCAL_REPOS ?? LOOPBACK_HOSTS.has(e.HOST),
    forgeUrls: [e.GITHUB_URL, e.GITLAB_URL].filter((url): url is string => Boolean(url)),
    output: { messageMaxBytes: e.OUTPUT_MESSAGE_MAX_BYTES, logMaxBytes: e.OUTPUT_LOG_MAX_BYTES },
  };
}

/** MAX_ACTIVE_WORKSPACES' default for this machine (see ServerConfig.maxActiveWorkspaces). */
export function defaultMaxActiveWorkspaces(memoryBytes = totalmem(), cores = availableParallelism()): number {
  return Math.max(1, Math.min(Math.floor(memoryBytes / 2 ** 31), cores * 4));
}

/**
 * The secret values of the configuration, by variable name: what every
 * agent's output is redacted of (whichever agent runs, a command can print
 * its environment or a file holding a key).
 */
export function configuredSecrets(config: ServerConfig): Secret[] {
  const named: Array<[string, string | undefined]> = [
    ["ANTHROPIC_API_KEY", config.anthropic.apiKey],
    ["OPENAI_API_KEY", config.openai.apiKey],
    ["API_TOKEN", config.apiToken],
    ["SECRETS_KEY", config.secretsKey],
    ["GITHUB_TOKEN", config.delivery.github.token],
    ["GITHUB_WEBHOOK_SECRET", config.delivery.github.webhookSecret],
    ["GITLAB_TOKEN", config.delivery.gitlab.token],
    ["GITLAB_WEBHOOK_SECRET", config.delivery.gitlab.webhookSecret],
    ...config.delivery.hostCredentials.map((entry): [string, string] => ["GIT_CREDENTIALS_FILE", entry.password]),
  ];
  return named.flatMap(([name, value]) => (value ? [{ name, value }] : []));
}

function parseDelivery(env: NodeJS.ProcessEnv): DeliveryConfig {
  try {
    return loadDeliveryConfig(env);
  } catch (error) {
    if (error instanceof DeliveryConfigError) throw new ConfigError(error.variable, error.message);
    throw error;
  }
}

/** SANDBOX_ALLOWED_DOMAINS (comma or space separated), else the model endpoints and package registries. */
function resolveAllowedDomains(e: z.infer<typeof EnvSchema>): string[] {
  if (e.SANDBOX_ALLOWED_DOMAINS === undefined) {
    return defaultAllowedDomains({
      anthropicBaseUrl: e.ANTHROPIC_BASE_URL,
      openaiBaseUrl: e.OPENAI_BASE_URL,
      llmBaseUrl: e.LLM_BASE_URL,
    });
  }
  const entries = e.SANDBOX_ALLOWED_DOMAINS.split(/[\s,]+/).filter(Boolean);
  const invalid = entries.find((entry) => parseEntry(entry) === null);
  if (invalid !== undefined) {
    throw new ConfigError(
      "SANDBOX_ALLOWED_DOMAINS",
      `has ${JSON.stringify(invalid)}, which is not a host name, *.domain or address (with an optional :port)`,
    );
  }
  return entries;
}

/** A host name, an IP address (IPv6 with or without brackets), `*.domain`, or a CIDR range; a port is tolerated. */
function isHostPattern(value: string): boolean {
  return /^(\*\.)?[\w.-]+(:\d+)?$|^\[?[0-9a-f:.]+\]?(:\d+)?$|^[0-9a-f:.]+\/\d{1,3}$/i.test(value);
}

function resolveLlm(e: z.infer<typeof EnvSchema>): LlmConfig | undefined {
  if (!e.LLM_PROVIDER && !e.LLM_MODEL) return undefined;
  if (!e.LLM_MODEL) throw new ConfigError("LLM_MODEL", "is required when LLM_PROVIDER is set");
  const provider = e.LLM_PROVIDER ?? "openai";
  if (provider === "openai-compatible" && !e.LLM_BASE_URL) {
    throw new ConfigError("LLM_BASE_URL", "is required for LLM_PROVIDER=openai-compatible");
  }
  const apiKey = provider === "anthropic" ? e.ANTHROPIC_API_KEY : e.OPENAI_API_KEY;
  if (provider === "openai" && !apiKey && !e.LLM_BASE_URL && !e.OPENAI_BASE_URL) {
    throw new ConfigError("OPENAI_API_KEY", "is required for LLM_PROVIDER=openai");
  }
  if (provider === "anthropic" && !apiKey) {
    throw new ConfigError("ANTHROPIC_API_KEY", "is required for LLM_PROVIDER=anthropic");
  }
  return { provider, model: e.LLM_MODEL, baseUrl: e.LLM_BASE_URL ?? vendorBaseUrl(provider, e), apiKey };
}

/**
 * The vendor's endpoint as the AI SDK wants it, when LLM_BASE_URL is unset:
 * ANTHROPIC_BASE_URL follows Anthropic's convention (no `/v1`, which Claude
 * Code appends itself) while the AI SDK's Anthropic provider expects the
 * `/v1` root; OPENAI_BASE_URL already ends in `/v1` by OpenAI's convention.
 */
function vendorBaseUrl(provider: LlmConfig["provider"], e: z.infer<typeof EnvSchema>): string | undefined {
  if (provider === "anthropic" && e.ANTHROPIC_BASE_URL) return `${e.ANTHROPIC_BASE_URL}/v1`;
  if (provider === "openai") return e.OPENAI_BASE_URL;
  return undefined;
}

function resolveAgent(e: z.infer<typeof EnvSchema>, llm: LlmConfig | undefined): AgentKind {
  const requested = e.AGENT;
  if (requested === "llm" && !llm) throw new ConfigError("AGENT", "is llm but no model is configured (LLM_MODEL)");
  if (requested === "command" && !e.AGENT_COMMAND) {
    throw new ConfigError("AGENT_COMMAND", "is required for AGENT=command");
  }
  if (requested === "claude-code" && !e.ANTHROPIC_API_KEY) {
    throw new ConfigError("ANTHROPIC_API_KEY", "is required for AGENT=claude-code");
  }
  if (requested === "codex" && !e.OPENAI_API_KEY)
    throw new ConfigError("OPENAI_API_KEY", "is required for AGENT=codex");
  if (requested !== "auto") return requested;
  return llm ? "llm" : "shell";
}
