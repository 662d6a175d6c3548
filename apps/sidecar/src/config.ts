/**
 * The sidecar's configuration, read once from the environment and checked
 * with zod; an invalid value stops start-up with a message naming the
 * variable.
 *
 * Invariants:
 * - The token comes from SIDECAR_TOKEN_FD (read to the end, then closed: it
 *   is in no environment and no file afterwards), SIDECAR_TOKEN_FILE, or
 *   SIDECAR_TOKEN; the variable is removed from process.env once read, so
 *   nothing the sidecar starts can inherit it.
 * - SIDECAR_SOCKET (a unix socket path) wins over SIDECAR_HOST/PORT.
 * - SIDECAR_AGENT_BOX names the agent sandbox's description (agent-box.ts);
 *   without it commands run as the sidecar's own children.
 */
import { closeSync, readFileSync } from "node:fs";
import { AgentBoxSpec } from "@repo/workspace";
import { z } from "zod";

export interface SidecarConfig {
  /** Absolute path of the workspace directory. */
  workspace: string;
  /** Bearer token every request must carry. */
  token: string;
  /** Where to listen: a unix socket path, or a host and port (0 = an ephemeral port). */
  listen: { socket: string } | { host: string; port: number };
  /** The agent's sandbox, when commands must run in one. */
  agentBox?: AgentBoxSpec;
}

const EnvSchema = z
  .object({
    SIDECAR_WORKSPACE: z.string().min(1).startsWith("/", "must be an absolute path"),
    SIDECAR_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
    SIDECAR_TOKEN_FILE: z.string().min(1).optional(),
    SIDECAR_TOKEN_FD: z.coerce.number().int().min(3).optional(),
    SIDECAR_SOCKET: z.string().startsWith("/", "must be an absolute path").optional(),
    SIDECAR_HOST: z.string().min(1).default("127.0.0.1"),
    SIDECAR_PORT: z.coerce.number().int().min(0).max(65535).default(0),
    SIDECAR_AGENT_BOX: z.string().startsWith("/", "must be an absolute path").optional(),
  })
  .refine(
    (env) =>
      env.SIDECAR_TOKEN !== undefined || env.SIDECAR_TOKEN_FILE !== undefined || env.SIDECAR_TOKEN_FD !== undefined,
    { message: "set SIDECAR_TOKEN, SIDECAR_TOKEN_FILE or SIDECAR_TOKEN_FD", path: ["SIDECAR_TOKEN"] },
  );

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

function checkedToken(token: string, variable: string): string {
  if (token.length < 16) throw new ConfigError(`${variable}: the token must be at least 16 characters`);
  return token;
}

function readTokenFile(file: string): string {
  try {
    return checkedToken(readFileSync(file, "utf8").trim(), "SIDECAR_TOKEN_FILE");
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`SIDECAR_TOKEN_FILE: cannot read ${file}: ${(error as Error).message}`);
  }
}

/** Reads the token from an inherited descriptor (a pipe the launcher writes and closes), then closes it. */
function readTokenFd(fd: number): string {
  let text: string;
  try {
    text = readFileSync(fd, "utf8").trim();
  } catch (error) {
    throw new ConfigError(`SIDECAR_TOKEN_FD: cannot read descriptor ${fd}: ${(error as Error).message}`);
  } finally {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  }
  return checkedToken(text, "SIDECAR_TOKEN_FD");
}

function readAgentBox(file: string): AgentBoxSpec {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new ConfigError(`SIDECAR_AGENT_BOX: cannot read ${file}: ${(error as Error).message}`);
  }
  const parsed = AgentBoxSpec.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`SIDECAR_AGENT_BOX: ${file} is invalid: ${parsed.error.message}`);
  return parsed.data;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): SidecarConfig {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join(".") || "environment"}: ${issue.message}`);
    throw new ConfigError(`invalid sidecar configuration: ${issues.join("; ")}`);
  }
  const e = parsed.data;
  const token =
    e.SIDECAR_TOKEN_FD !== undefined
      ? readTokenFd(e.SIDECAR_TOKEN_FD)
      : e.SIDECAR_TOKEN_FILE !== undefined
        ? readTokenFile(e.SIDECAR_TOKEN_FILE)
        : e.SIDECAR_TOKEN!;
  delete env.SIDECAR_TOKEN;
  delete env.SIDECAR_TOKEN_FD;
  return {
    workspace: e.SIDECAR_WORKSPACE,
    token,
    listen: e.SIDECAR_SOCKET ? { socket: e.SIDECAR_SOCKET } : { host: e.SIDECAR_HOST, port: e.SIDECAR_PORT },
    agentBox: e.SIDECAR_AGENT_BOX ? readAgentBox(e.SIDECAR_AGENT_BOX) : undefined,
  };
}
