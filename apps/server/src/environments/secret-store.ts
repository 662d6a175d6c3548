/**
 * The secrets store: named values, server-wide or for one repository, kept
 * sealed in the database (utils/secret-box.ts).
 *
 * Invariants:
 * - A value is stored only as its seal, bound to the secret's name and scope:
 *   a sealed value copied to another row or scope does not open there.
 * - Nothing here returns a value except `forRepository`, which the server
 *   uses to hand secrets to the process that needs them and to the redactor;
 *   listings carry names, scopes and times only.
 * - For a repository, its own secret of a name wins over the server-wide one.
 */
import { randomUUID } from "node:crypto";
import { type Db, type SecretRow, secrets } from "@repo/db";
import { and, asc, eq, isNull, or, type SQL, sql } from "drizzle-orm";
import { NotFoundError } from "../errors";
import { normalizeRepoUrl } from "../repository/repository-store";
import type { Clock } from "../utils/clock";
import type { Secret } from "../utils/redaction";
import type { SecretBox } from "../utils/secret-box";

export interface SecretInfo {
  name: string;
  /** Normalized repoUrl, or null for server-wide. */
  repoUrl: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface SecretStoreDeps {
  db: Db;
  box: SecretBox;
  clock: Clock;
}

/** What a sealed value is bound to: a seal moved to another name or scope does not open. */
function sealContext(name: string, repoUrl: string | null): string {
  return JSON.stringify(["secret", name, repoUrl]);
}

function scopeIs(repoUrl: string | null): SQL {
  return repoUrl === null ? isNull(secrets.repoUrl) : eq(secrets.repoUrl, repoUrl);
}

function info(row: SecretRow): SecretInfo {
  return { name: row.name, repoUrl: row.repoUrl, createdAt: row.createdAt, updatedAt: row.updatedAt };
}

export class SecretStore {
  constructor(private readonly deps: SecretStoreDeps) {}

  /** Every secret, by name then scope (server-wide first). Never values. */
  async list(): Promise<SecretInfo[]> {
    const rows = await this.deps.db
      .select()
      .from(secrets)
      .orderBy(asc(secrets.name), sql`${secrets.repoUrl} NULLS FIRST`);
    return rows.map(info);
  }

  /** Creates or replaces the secret `name` in its scope. */
  async put(name: string, value: string, repoUrl?: string): Promise<SecretInfo> {
    const scope = repoUrl === undefined ? null : normalizeRepoUrl(repoUrl);
    const now = this.deps.clock.now();
    const valueSealed = this.deps.box.seal(value, sealContext(name, scope));
    const [row] = await this.deps.db
      .insert(secrets)
      .values({ id: randomUUID(), name, repoUrl: scope, valueSealed, createdAt: now, updatedAt: now })
      .onConflictDoUpdate({ target: [secrets.name, secrets.repoUrl], set: { valueSealed, updatedAt: now } })
      .returning();
    return info(row!);
  }

  /** Deletes the secret `name` of the scope; NotFoundError when there is none. */
  async delete(name: string, repoUrl?: string): Promise<void> {
    const scope = repoUrl === undefined ? null : normalizeRepoUrl(repoUrl);
    const deleted = await this.deps.db
      .delete(secrets)
      .where(and(eq(secrets.name, name), scopeIs(scope)))
      .returning({ id: secrets.id });
    if (deleted.length === 0) {
      throw new NotFoundError("secret", scope === null ? name : `${name} of ${scope}`);
    }
  }

  /**
   * The secrets a task on `repoUrl` may use, with their values: the
   * repository's own, and the server-wide ones it does not override.
   */
  async forRepository(repoUrl: string): Promise<Secret[]> {
    const scope = normalizeRepoUrl(repoUrl);
    const rows = await this.deps.db
      .select()
      .from(secrets)
      .where(or(isNull(secrets.repoUrl), eq(secrets.repoUrl, scope)));
    const byName = new Map<string, SecretRow>();
    for (const row of rows) {
      const seen = byName.get(row.name);
      if (!seen || (seen.repoUrl === null && row.repoUrl !== null)) byName.set(row.name, row);
    }
    return [...byName.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((row) => ({
        name: row.name,
        value: this.deps.box.open(row.valueSealed, sealContext(row.name, row.repoUrl)),
      }));
  }
}
