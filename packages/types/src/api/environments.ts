/**
 * Secrets and per-repository environments (SPEC §5): request bodies and
 * answers. A secret's value travels only in the PUT body; no answer ever
 * carries one.
 */
import { z } from "zod";
import { RepoUrlSchema } from "./schemas";

/**
 * Variables a secret or an environment variable may not set: they steer the
 * shell, the dynamic linker, git's confinement of the workspace, the sidecar
 * or the sandbox's egress proxy, none of which a repository's setup may redirect.
 */
const RESERVED_NAME =
  /^(PATH|HOME|SHELL|USER|LOGNAME|PWD|OLDPWD|IFS|ENV|BASH_ENV|LANG|TERM|TMPDIR|LD_.*|GIT_.*|SIDECAR_.*|UMBRA_.*|(HTTPS?|ALL|NO)_PROXY)$/i;

/** An environment variable name: letters, digits and `_`, not starting with a digit, not a reserved one. */
export const EnvNameSchema = z
  .string()
  .min(1, "the name is required")
  .max(128)
  .regex(
    /^[A-Za-z_][A-Za-z0-9_]*$/,
    "must be an environment variable name (letters, digits, _; not starting with a digit)",
  )
  .refine((name) => !RESERVED_NAME.test(name), { message: "is reserved (PATH, HOME, LD_*, GIT_*, proxy settings…)" });

/**
 * Shortest secret value: a value of a few characters occurs in ordinary
 * output by chance, and replacing every occurrence would garble the logs.
 * The same bound as the server's redaction, so every stored secret is redacted.
 */
export const MIN_SECRET_LENGTH = 8;

const NoNul = (value: string) => !value.includes("\0");

export const PutSecretBodySchema = z.strictObject({
  value: z
    .string()
    .min(MIN_SECRET_LENGTH, `value must have at least ${MIN_SECRET_LENGTH} characters`)
    .max(65_536)
    .refine(NoNul, { message: "value must not contain NUL characters" }),
  /** Scope: this repository only. Absent = every repository (server-wide). */
  repoUrl: RepoUrlSchema.optional(),
});
export type PutSecretBody = z.infer<typeof PutSecretBodySchema>;

export const SecretSchema = z.object({
  name: z.string(),
  /** null = server-wide. */
  repoUrl: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type SecretDto = z.infer<typeof SecretSchema>;
export const SecretListResponseSchema = z.object({ secrets: z.array(SecretSchema) });

export const SANDBOX_NETWORK_POLICIES = ["off", "allowlist", "on"] as const;
export type SandboxNetworkPolicy = (typeof SANDBOX_NETWORK_POLICIES)[number];

/** A host name, `*.`-prefixed for its subdomains, with an optional port: `registry.npmjs.org`, `*.pypi.org`, `10.0.0.5:4873`. */
export const AllowedDomainSchema = z
  .string()
  .trim()
  .toLowerCase()
  .max(253)
  .regex(/^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/, {
    message: "must be a host name, optionally *.-prefixed, with an optional :port",
  });

export const PutEnvironmentBodySchema = z.strictObject({
  repoUrl: RepoUrlSchema,
  /**
   * Shell script INSTALL_DEPENDENCIES runs in the workspace (`sh -e`). Absent
   * or null: the repository's own `.umbra/setup.sh`, when it has one.
   */
  setupScript: z.string().max(65_536).refine(NoNul, { message: "must not contain NUL characters" }).nullish(),
  /** Plain (not secret) variables for the setup and the agent's commands. */
  env: z
    .record(EnvNameSchema, z.string().max(16_384).refine(NoNul, { message: "must not contain NUL characters" }))
    .refine((env) => Object.keys(env).length <= 200, { message: "at most 200 variables" })
    .optional(),
  /** Sandbox egress for this repository; absent = the server's SANDBOX_NETWORK. */
  network: z.enum(SANDBOX_NETWORK_POLICIES).nullish(),
  /** Egress allowlist for this repository; absent = the server's SANDBOX_ALLOWED_DOMAINS. */
  allowedDomains: z.array(AllowedDomainSchema).max(200).nullish(),
  /** Secrets the agent's commands get as environment variables (setup gets every secret in scope). Default none. */
  agentSecrets: z.array(EnvNameSchema).max(200).optional(),
  /** Cache what setup produced and restore it instead of running setup again. Default true. */
  cache: z.boolean().optional(),
});
export type PutEnvironmentBody = z.infer<typeof PutEnvironmentBodySchema>;

export const EnvironmentSchema = z.object({
  repoUrl: z.string(),
  setupScript: z.string().nullable(),
  env: z.record(z.string(), z.string()),
  network: z.enum(SANDBOX_NETWORK_POLICIES).nullable(),
  allowedDomains: z.array(z.string()).nullable(),
  agentSecrets: z.array(z.string()),
  cache: z.boolean(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type EnvironmentDto = z.infer<typeof EnvironmentSchema>;
export const EnvironmentListResponseSchema = z.object({ environments: z.array(EnvironmentSchema) });
