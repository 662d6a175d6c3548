/**
 * The databases a test suite runs against: embedded PGlite always, and a real
 * Postgres when one is reachable (TEST_DATABASE_URL, default the local CI
 * role). Each Postgres test database is created fresh and dropped afterwards,
 * so test files can run in parallel.
 */
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Database, openDatabase } from "@repo/db";
import pg from "pg";

export const POSTGRES_ADMIN_URL = process.env.TEST_DATABASE_URL ?? "postgres://umbra:umbra@127.0.0.1:5432/umbra";

/**
 * PGLITE_TEMPLATE_DIR of the servers tests and benchmarks start: each starts
 * on a fresh data directory, whose embedded database is then a copy of one
 * template instead of a new initdb and every migration (seconds each). Kept
 * between runs; a changed migration makes a new template (pglite-template.ts).
 */
export const PGLITE_TEMPLATES = join(tmpdir(), `umbra-pglite-templates-${process.getuid?.() ?? "user"}`);

let available: Promise<boolean> | undefined;

export function postgresAvailable(): Promise<boolean> {
  available ??= (async () => {
    const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 2000 });
    try {
      await client.connect();
      await client.query("SELECT 1");
      return true;
    } catch {
      if (process.env.UMBRA_TEST_REQUIRE_ALL === "1") {
        throw new Error(`Postgres is required (UMBRA_TEST_REQUIRE_ALL=1) but ${POSTGRES_ADMIN_URL} is not reachable`);
      }
      return false;
    } finally {
      await client.end().catch(() => {});
    }
  })();
  return available;
}

export interface ScratchPostgres {
  url: string;
  drop(): Promise<void>;
}

/** Creates an empty Postgres database for one test file. */
export async function createScratchPostgres(): Promise<ScratchPostgres> {
  const name = `umbra_t_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

/**
 * The databases a server process can be given: its own embedded one under
 * DATA_DIR (`database()` gives null), and a fresh Postgres database when one
 * is reachable (the caller drops it).
 */
export async function serverDatabaseTargets(): Promise<
  { name: "pglite" | "postgres"; database(): Promise<ScratchPostgres | null> }[]
> {
  return [
    { name: "pglite", database: async () => null },
    ...((await postgresAvailable()) ? [{ name: "postgres" as const, database: createScratchPostgres }] : []),
  ];
}

export interface DatabaseTarget {
  name: "pglite" | "postgres";
  /** Opens a fresh, migrated, empty database. Closing it also drops a scratch Postgres database. */
  open(): Promise<TestDatabase>;
}

export interface TestDatabase extends Database {
  /** Connection URL (Postgres only), for a second connection or a second server. */
  url?: string;
}

export async function databaseTargets(): Promise<DatabaseTarget[]> {
  const targets: DatabaseTarget[] = [
    {
      name: "pglite",
      open: () => openDatabase(),
    },
  ];
  if (await postgresAvailable()) {
    targets.push({
      name: "postgres",
      async open() {
        const scratch = await createScratchPostgres();
        const database = await openDatabase({ databaseUrl: scratch.url, poolSize: 4 });
        return {
          ...database,
          url: scratch.url,
          async close() {
            await database.close();
            await scratch.drop();
          },
        };
      },
    });
  }
  return targets;
}
