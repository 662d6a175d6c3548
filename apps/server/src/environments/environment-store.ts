/**
 * Per-repository environments: the setup script INSTALL_DEPENDENCIES runs,
 * plain variables, which secrets the agent gets, whether setup's products are
 * cached, and the sandbox's egress policy for the repository.
 *
 * PUT replaces an environment whole: a field left out goes back to its
 * default. Environments hold no secret values (secrets live in the secrets
 * store and are referenced by name).
 */
import { type Db, type EnvironmentRow, environments } from "@repo/db";
import type { PutEnvironmentBody, SandboxNetworkPolicy } from "@repo/types";
import { asc, eq } from "drizzle-orm";
import { NotFoundError } from "../errors";
import { normalizeRepoUrl } from "../repository/repository-store";
import type { Clock } from "../utils/clock";

export interface Environment {
  /** Normalized repoUrl. */
  repoUrl: string;
  setupScript: string | null;
  env: Record<string, string>;
  network: SandboxNetworkPolicy | null;
  allowedDomains: string[] | null;
  agentSecrets: string[];
  cache: boolean;
  createdAt: Date;
  updatedAt: Date;
}

function fromRow(row: EnvironmentRow): Environment {
  return { ...row, network: row.network as SandboxNetworkPolicy | null };
}

export class EnvironmentStore {
  constructor(private readonly deps: { db: Db; clock: Clock }) {}

  async list(): Promise<Environment[]> {
    const rows = await this.deps.db.select().from(environments).orderBy(asc(environments.repoUrl));
    return rows.map(fromRow);
  }

  /** The environment configured for `repoUrl`, or null. */
  async get(repoUrl: string): Promise<Environment | null> {
    const [row] = await this.deps.db
      .select()
      .from(environments)
      .where(eq(environments.repoUrl, normalizeRepoUrl(repoUrl)));
    return row ? fromRow(row) : null;
  }

  /** Creates or replaces the environment of `body.repoUrl`. */
  async put(body: PutEnvironmentBody): Promise<Environment> {
    const now = this.deps.clock.now();
    const fields = {
      setupScript: body.setupScript ?? null,
      env: body.env ?? {},
      network: body.network ?? null,
      allowedDomains: body.allowedDomains ?? null,
      agentSecrets: [...new Set(body.agentSecrets ?? [])],
      cache: body.cache ?? true,
      updatedAt: now,
    };
    const [row] = await this.deps.db
      .insert(environments)
      .values({ repoUrl: normalizeRepoUrl(body.repoUrl), ...fields, createdAt: now })
      .onConflictDoUpdate({ target: environments.repoUrl, set: fields })
      .returning();
    return fromRow(row!);
  }

  async delete(repoUrl: string): Promise<void> {
    const deleted = await this.deps.db
      .delete(environments)
      .where(eq(environments.repoUrl, normalizeRepoUrl(repoUrl)))
      .returning({ repoUrl: environments.repoUrl });
    if (deleted.length === 0) throw new NotFoundError("environment", repoUrl);
  }
}
