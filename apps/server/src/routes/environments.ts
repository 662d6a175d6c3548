/**
 * The secrets and environments routes of SPEC §5. Thin: parse with the
 * shared schemas, call the stores, shape the answer. No answer carries a
 * secret's value.
 */
import {
  type EnvironmentDto,
  EnvNameSchema,
  PutEnvironmentBodySchema,
  PutSecretBodySchema,
  RepoUrlSchema,
  type SecretDto,
} from "@repo/types";
import type { FastifyInstance } from "fastify";
import type { Environment, EnvironmentStore } from "../environments/environment-store";
import type { SecretInfo, SecretStore } from "../environments/secret-store";
import { ValidationError } from "../errors";
import { parseBody } from "./tasks";

export interface EnvironmentRouteDeps {
  secrets: SecretStore;
  environments: EnvironmentStore;
}

function secretDto(secret: SecretInfo): SecretDto {
  return {
    name: secret.name,
    repoUrl: secret.repoUrl,
    createdAt: secret.createdAt.toISOString(),
    updatedAt: secret.updatedAt.toISOString(),
  };
}

function environmentDto(environment: Environment): EnvironmentDto {
  return {
    repoUrl: environment.repoUrl,
    setupScript: environment.setupScript,
    env: environment.env,
    network: environment.network,
    allowedDomains: environment.allowedDomains,
    agentSecrets: environment.agentSecrets,
    cache: environment.cache,
    createdAt: environment.createdAt.toISOString(),
    updatedAt: environment.updatedAt.toISOString(),
  };
}

function secretName(params: unknown): string {
  const parsed = EnvNameSchema.safeParse((params as { name?: string }).name ?? "");
  if (!parsed.success) throw new ValidationError(`secret name ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}

/** The `repoUrl` query parameter: absent, or a valid repoUrl. */
function repoUrlQuery(query: unknown, required: boolean): string | undefined {
  const value = (query as { repoUrl?: unknown }).repoUrl;
  if (value === undefined && !required) return undefined;
  const parsed = RepoUrlSchema.safeParse(value);
  if (!parsed.success) throw new ValidationError(`repoUrl: ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}

export function registerEnvironmentRoutes(app: FastifyInstance, { secrets, environments }: EnvironmentRouteDeps): void {
  app.get("/api/secrets", async () => ({ secrets: (await secrets.list()).map(secretDto) }));

  app.put("/api/secrets/:name", async (request) => {
    const name = secretName(request.params);
    const body = parseBody(PutSecretBodySchema, request.body);
    return { secret: secretDto(await secrets.put(name, body.value, body.repoUrl)) };
  });

  app.delete("/api/secrets/:name", async (request, reply) => {
    const name = secretName(request.params);
    await secrets.delete(name, repoUrlQuery(request.query, false));
    return reply.code(204).send();
  });

  app.get("/api/environments", async () => ({ environments: (await environments.list()).map(environmentDto) }));

  app.put("/api/environments", async (request) => {
    const body = parseBody(PutEnvironmentBodySchema, request.body);
    return { environment: environmentDto(await environments.put(body)) };
  });

  app.delete("/api/environments", async (request, reply) => {
    await environments.delete(repoUrlQuery(request.query, true)!);
    return reply.code(204).send();
  });
}
