/**
 * The sidecar's configuration, read once from the environment and checked
 * with zod; an invalid value stops start-up with a message naming the
 * variable.
 *
 * Invariant: the token is removed from process.env once read, so nothing the
 * sidecar starts can inherit it.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";

export interface SidecarConfig {
  /** Absolute path of the workspace directory. */
  workspace: string;
  /** Bearer token every request must carry. */
  token: string;
  host: string;
  /** 0 = an ephemeral port chosen by the system. */
  port: number;
  /** The agent's state directory, archived and restored through /agent-state/*; unset = none. */
  agentHome?: string;
}

const EnvSchema = z
  .object({
    SIDECAR_WORKSPACE: z.string().min(1).startsWith("/", "must be an absolute path"),
    SIDECAR_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
    SIDECAR_TOKEN_FILE: z.string().min(1).optional(),
    SIDECAR_HOST: z.string().min(1).default("127.0.0.1"),
    SIDECAR_PORT: z.coerce.number().int().min(0).max(65535).default(0),
    SIDECAR_AGENT_HOME: z.string().min(1).startsWith("/", "must be an absolute path").optional(),
  })
  .refine((env) => env.SIDECAR_TOKEN !== undefined || env.SIDECAR_TOKEN_FILE !== undefined, {
    message: "set SIDECAR_TOKEN or SIDECAR_TOKEN_FILE",
    path: ["SIDECAR_TOKEN"],
  });

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

function readToken(file: string): string {
  let token: string;
  try {
    token = readFileSync(file, "utf8").trim();
  } catch (error) {
    throw new ConfigError(`SIDECAR_TOKEN_FILE: cannot read ${file}: ${(error as Error).message}`);
  }
  if (token.length < 16) throw new ConfigError("SIDECAR_TOKEN_FILE: the token must be at least 16 characters");
  return token;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): SidecarConfig {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
    throw new ConfigError(`invalid sidecar configuration: ${issues.join("; ")}`);
  }
  const { SIDECAR_WORKSPACE, SIDECAR_TOKEN, SIDECAR_TOKEN_FILE, SIDECAR_HOST, SIDECAR_PORT, SIDECAR_AGENT_HOME } =
    parsed.data;
  const token = SIDECAR_TOKEN ?? readToken(SIDECAR_TOKEN_FILE!);
  delete env.SIDECAR_TOKEN;
  return {
    workspace: SIDECAR_WORKSPACE,
    token,
    host: SIDECAR_HOST,
    port: SIDECAR_PORT,
    ...(SIDECAR_AGENT_HOME ? { agentHome: SIDECAR_AGENT_HOME } : {}),
  };
}
