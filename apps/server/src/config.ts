/**
 * Server configuration from the environment (SPEC §4), parsed with zod.
 * An invalid value stops start-up with a message naming the variable.
 */
import { resolve } from "node:path";
import { AGENT_KINDS, type AgentKind, type TaskMode } from "@repo/types";
import { z } from "zod";
import { parseSecretsKey } from "./utils/secret-box";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

const optionalString = z
  .string()
  .trim()
  .transform((value) => (value === "" ? undefined : value))
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

const EnvSchema = z.object({
  PORT: integer(3000, 0).refine((port) => port <= 65535, "must be a port number (0-65535)"),
  HOST: z.string().trim().min(1).default("127.0.0.1"),
  DATA_DIR: z.string().trim().min(1).default("./.umbra"),
  DATABASE_URL: optionalString.refine((url) => !url || /^postgres(ql)?:\/\//.test(url), {
    message: "must be a postgres:// or postgresql:// URL",
  }),
  AGENT_MODE: z
    .enum(["local", "remote", "firecracker"], { message: "must be local, remote or firecracker" })
    .default("local"),
  VM_PROVIDER: z.enum(["process", "kubernetes"], { message: "must be process or kubernetes" }).default("process"),
  TASK_CLEANUP_DELAY_MS: integer(600_000, 0),
  TASK_CLEANUP_INTERVAL_MS: integer(60_000, 100),
  VM_READY_TIMEOUT_MS: integer(60_000, 100),
  HEALTH_CHECK_INTERVAL_MS: integer(30_000, 100),
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
  AGENT: z.enum(["auto", ...AGENT_KINDS], { message: "must be auto, llm, command or shell" }).default("auto"),
  LLM_PROVIDER: z
    .enum(["openai", "anthropic", "openai-compatible"], { message: "must be openai, anthropic or openai-compatible" })
    .optional(),
  LLM_MODEL: optionalString,
  LLM_BASE_URL: optionalString.refine((url) => !url || URL.canParse(url), { message: "must be a URL" }),
  OPENAI_API_KEY: optionalString,
  ANTHROPIC_API_KEY: optionalString,
  AGENT_COMMAND: optionalString,
  SIDECAR_BUNDLE: optionalString,
  K8S_NAMESPACE: z.string().default("umbra"),
  K8S_IMAGE: z.string().default("umbra-sidecar:latest"),
  K8S_RUNTIME_CLASS: z.string().default("kata-fc"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export interface LlmConfig {
  provider: "openai" | "anthropic" | "openai-compatible";
  model: string;
  baseUrl?: string;
  apiKey?: string;
}

export interface ServerConfig {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl?: string;
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
  apiToken?: string;
  /** Key of the secrets store and sealed sandbox tokens (32 bytes, base64 or hex). Default: a key file in DATA_DIR. */
  secretsKey?: string;
  agent: AgentKind;
  llm?: LlmConfig;
  agentCommand?: string;
  kubernetes: { namespace: string; image: string; runtimeClassName: string };
  /** The built sidecar the `process` provider runs. Default: the `@repo/sidecar/bundle` package export. */
  sidecarBundle?: string;
  logLevel: string;
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
  const llm = resolveLlm(e);
  const agent = resolveAgent(e.AGENT, llm, e.AGENT_COMMAND);
  if (!LOOPBACK_HOSTS.has(e.HOST) && !e.API_TOKEN) {
    throw new ConfigError("API_TOKEN", `must be set when HOST (${e.HOST}) is not a loopback address`);
  }
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir: resolve(e.DATA_DIR),
    databaseUrl: e.DATABASE_URL,
    mode: e.AGENT_MODE === "local" ? "local" : "remote",
    vmProvider: e.VM_PROVIDER,
    cleanupDelayMs: e.TASK_CLEANUP_DELAY_MS,
    cleanupIntervalMs: e.TASK_CLEANUP_INTERVAL_MS,
    vmReadyTimeoutMs: e.VM_READY_TIMEOUT_MS,
    healthCheckIntervalMs: e.HEALTH_CHECK_INTERVAL_MS,
    apiToken: e.API_TOKEN,
    secretsKey: e.SECRETS_KEY,
    agent,
    llm,
    agentCommand: e.AGENT_COMMAND,
    kubernetes: { namespace: e.K8S_NAMESPACE, image: e.K8S_IMAGE, runtimeClassName: e.K8S_RUNTIME_CLASS },
    sidecarBundle: e.SIDECAR_BUNDLE,
    logLevel: e.LOG_LEVEL,
  };
}

function resolveLlm(e: z.infer<typeof EnvSchema>): LlmConfig | undefined {
  if (!e.LLM_PROVIDER && !e.LLM_MODEL) return undefined;
  if (!e.LLM_MODEL) throw new ConfigError("LLM_MODEL", "is required when LLM_PROVIDER is set");
  const provider = e.LLM_PROVIDER ?? "openai";
  if (provider === "openai-compatible" && !e.LLM_BASE_URL) {
    throw new ConfigError("LLM_BASE_URL", "is required for LLM_PROVIDER=openai-compatible");
  }
  const apiKey = provider === "anthropic" ? e.ANTHROPIC_API_KEY : e.OPENAI_API_KEY;
  if (provider === "openai" && !apiKey && !e.LLM_BASE_URL) {
    throw new ConfigError("OPENAI_API_KEY", "is required for LLM_PROVIDER=openai");
  }
  if (provider === "anthropic" && !apiKey) {
    throw new ConfigError("ANTHROPIC_API_KEY", "is required for LLM_PROVIDER=anthropic");
  }
  return { provider, model: e.LLM_MODEL, baseUrl: e.LLM_BASE_URL, apiKey };
}

function resolveAgent(
  requested: "auto" | AgentKind,
  llm: LlmConfig | undefined,
  command: string | undefined,
): AgentKind {
  if (requested === "llm" && !llm) throw new ConfigError("AGENT", "is llm but no model is configured (LLM_MODEL)");
  if (requested === "command" && !command) throw new ConfigError("AGENT_COMMAND", "is required for AGENT=command");
  if (requested !== "auto") return requested;
  return llm ? "llm" : "shell";
}
