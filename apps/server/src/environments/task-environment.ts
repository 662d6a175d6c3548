/**
 * What a task's processes get from its repository's environment, and the
 * rule for secrets:
 *
 * - The setup script (INSTALL_DEPENDENCIES) gets the environment's plain
 *   variables and every secret in scope for the repository (its own and the
 *   server-wide ones), as environment variables of that one command.
 * - The agent's commands get the plain variables and only the secrets the
 *   environment names in `agentSecrets`; the agent never sees the rest.
 * - Every secret in scope is redacted from every output of the task, whoever
 *   printed it: setup can write a secret into a file the agent later prints.
 *
 * A new sandbox's egress policy is the environment's `network` and
 * `allowedDomains` where it sets them, the server's otherwise.
 *
 * A secret reaches a process only this way: never on a command line, never
 * in the workspace's files by Umbra's doing, never in the task's JSON.
 *
 * These reads are on a task's path (CREATE_VM, INSTALL_DEPENDENCIES, every
 * turn), so they step over a database connection that was dropped, as the
 * task's own reads do (db-retry.ts): a connection lost a moment ago must not
 * fail the task.
 */
import type { CommandResult, RunCommandOptions, ToolExecutor } from "@repo/workspace";
import type { NetworkPolicy } from "../execution/vm/egress/egress-policy";
import { retryRead } from "../utils/db-retry";
import type { Secret } from "../utils/redaction";
import type { Environment, EnvironmentStore } from "./environment-store";
import type { SecretStore } from "./secret-store";

export interface TaskEnvironment {
  /** The repository's environment, or null when none is configured. */
  environment: Environment | null;
  /** Every secret in scope (what the redactor replaces). */
  secrets: Secret[];
  /** Variables of the setup script: the plain ones and every secret. */
  setupEnv: Record<string, string>;
  /** Variables of the agent's commands: the plain ones and the secrets named in `agentSecrets`. */
  agentEnv: Record<string, string>;
}

export class TaskEnvironments {
  constructor(private readonly deps: { environments: EnvironmentStore; secrets: SecretStore }) {}

  async forRepository(repoUrl: string): Promise<TaskEnvironment> {
    const [environment, secrets] = await Promise.all([
      retryRead(() => this.deps.environments.get(repoUrl)),
      retryRead(() => this.deps.secrets.forRepository(repoUrl)),
    ]);
    const plain = environment?.env ?? {};
    const values = Object.fromEntries(secrets.map((s) => [s.name, s.value]));
    const forAgent = new Set(environment?.agentSecrets ?? []);
    return {
      environment,
      secrets,
      setupEnv: { ...plain, ...values },
      agentEnv: {
        ...plain,
        ...Object.fromEntries(secrets.filter((s) => forAgent.has(s.name)).map((s) => [s.name, s.value])),
      },
    };
  }

  /** The egress policy of a new sandbox for `repoUrl` (see sandboxNetwork). */
  async sandboxNetwork(repoUrl: string, server: NetworkPolicy): Promise<NetworkPolicy | undefined> {
    return sandboxNetwork(await retryRead(() => this.deps.environments.get(repoUrl)), server);
  }
}

/**
 * A sandbox's egress policy for the environment: its `network` and
 * `allowedDomains` each replace the server's (SANDBOX_NETWORK,
 * SANDBOX_ALLOWED_DOMAINS) when set. Undefined when the environment sets
 * neither, so the provider's own default applies.
 */
export function sandboxNetwork(environment: Environment | null, server: NetworkPolicy): NetworkPolicy | undefined {
  if (!environment || (environment.network === null && environment.allowedDomains === null)) return undefined;
  return {
    mode: environment.network ?? server.mode,
    allowedDomains: environment.allowedDomains ?? server.allowedDomains,
  };
}

/**
 * The agent's view of a workspace: the same executor, with `env` added to
 * every command it runs (a command's own variables win).
 */
export function withCommandEnvironment(executor: ToolExecutor, env: Record<string, string>): ToolExecutor {
  if (Object.keys(env).length === 0) return executor;
  return {
    readFile: (path) => executor.readFile(path),
    writeFile: (path, content) => executor.writeFile(path, content),
    editFile: (path, search, replace, options) => executor.editFile(path, search, replace, options),
    listDir: (path) => executor.listDir(path),
    grep: (pattern, options) => executor.grep(pattern, options),
    commitAll: (message) => executor.commitAll(message),
    runCommand: (command: string, options: RunCommandOptions = {}): Promise<CommandResult> =>
      executor.runCommand(command, { ...options, env: { ...env, ...options.env } }),
  };
}
