/**
 * Opens Umbra's database: embedded PGlite under a data directory by default,
 * Postgres when a URL is given. Either way the committed migrations are
 * applied before the handle is returned, so callers always see the current
 * schema; re-opening an up-to-date database applies nothing.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import type { SQL } from "drizzle-orm";
import { drizzle as drizzlePg } from "drizzle-orm/node-postgres";
import { migrate as migratePg } from "drizzle-orm/node-postgres/migrator";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import pg from "pg";
import { lockEmbeddedDatabase } from "./pglite-lock";
import { copyFromTemplate, templateName } from "./pglite-template";
import * as schema from "./schema";

export type Schema = typeof schema;
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

/**
 * This package's directory, found through its name rather than this file's
 * location: in the bundled server (scripts/build-server.mjs) this code runs
 * from apps/server/dist, where a path relative to the file would miss.
 */
const PACKAGE_DIR = dirname(createRequire(import.meta.url).resolve("@repo/db/package.json"));

export const MIGRATIONS_FOLDER = join(PACKAGE_DIR, "drizzle");

/** Any Postgres advisory-lock key; held while migrating so concurrent servers don't race. */
const MIGRATION_LOCK_KEY = 7_426_113;

export interface OpenDatabaseOptions {
  /** Postgres connection URL. When unset, an embedded PGlite database is used. */
  databaseUrl?: string;
  /** Directory holding the embedded database (`<dataDir>/db`). Unset with no URL = in-memory. */
  dataDir?: string;
  /** Maximum Postgres pool size. Default 10. */
  poolSize?: number;
  /** Called when a Postgres connection errors (e.g. the server restarted or ended it). */
  onPoolError?: (error: Error) => void;
  /**
   * A directory of embedded-database templates (pglite-template.ts): a new
   * embedded database on disk is copied from one instead of being created
   * from nothing. Unset: created from nothing.
   */
  templateDir?: string;
}

export interface Database {
  db: Db;
  kind: "pglite" | "postgres";
  /** The connection URL (Postgres only): for connections of their own (LISTEN, advisory locks). */
  url?: string;
  /**
   * Embedded database only: writes a checkpoint when more than
   * `thresholdBytes` of WAL were written since the last one, so the WAL
   * before it is recycled; true when it did. PGlite runs Postgres as one
   * process with no checkpointer, so without this its WAL (pg_wal) grows
   * with every write until the server stops: 800 MB after indexing a 380 MB
   * repository. Postgres checkpoints by itself and has no such method.
   */
  checkpointIfDue?(thresholdBytes: number): Promise<boolean>;
  close(): Promise<void>;
}

export async function openDatabase(options: OpenDatabaseOptions = {}): Promise<Database> {
  if (options.databaseUrl) return openPostgres(options.databaseUrl, options);
  return openPglite(options.dataDir, options.templateDir);
}

/**
 * Embedded Postgres sized for one server's own bookkeeping rather than for a
 * database host: its defaults (128 MB of shared buffers among them) made the
 * embedded database most of the server's memory. Measured in `npm run bench`.
 * The WAL a checkpoint keeps for reuse is bounded by max_wal_size and
 * min_wal_size (64 and 32 MB here, where Postgres has 1 GB and 80 MB); the
 * checkpoints themselves come from checkpointIfDue.
 */
export const PGLITE_START_PARAMS = [
  ...PGlite.defaultStartParams,
  ...["-c", "shared_buffers=16MB", "-c", "wal_buffers=1MB", "-c", "temp_buffers=2MB"],
  ...["-c", "work_mem=4MB", "-c", "maintenance_work_mem=16MB"],
  ...["-c", "max_wal_size=64MB", "-c", "min_wal_size=32MB"],
];

async function openPglite(dataDir: string | undefined, templateDir: string | undefined): Promise<Database> {
  let path: string | undefined;
  let unlock = () => {};
  if (dataDir) {
    path = join(dataDir, "db");
    mkdirSync(path, { recursive: true });
    unlock = lockEmbeddedDatabase(path);
  }
  try {
    if (path && !existsSync(join(path, "PG_VERSION"))) await createPglite(path, templateDir);
    const client = await PGlite.create(path, { startParams: PGLITE_START_PARAMS });
    const db = drizzlePglite(client, { schema });
    await migratePglite(db, { migrationsFolder: MIGRATIONS_FOLDER });
    let closed = false;
    return {
      db: db as unknown as Db,
      kind: "pglite",
      checkpointIfDue: async (thresholdBytes) => {
        const { rows } = await client.query<{ bytes: string }>(
          "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), redo_lsn)::text AS bytes FROM pg_control_checkpoint()",
        );
        if (Number(rows[0]?.bytes ?? 0) <= thresholdBytes) return false;
        await client.exec("CHECKPOINT");
        return true;
      },
      close: async () => {
        if (closed) return;
        closed = true;
        await client.close();
        unlock();
      },
    };
  } catch (error) {
    unlock();
    throw error;
  }
}

/** Makes the new embedded database in `path`: a copy of its template when there is a template directory. */
function createPglite(path: string, templateDir: string | undefined): Promise<void> {
  const name = templateDir ? templateName(PGLITE_START_PARAMS, MIGRATIONS_FOLDER) : null;
  if (!templateDir || !name) return initializePglite(path);
  return copyFromTemplate(templateDir, name, path, initializePglite);
}

/**
 * Creates a new data directory and applies the migrations in a child
 * process: initdb's WebAssembly memory (hundreds of MB) then ends with that
 * process instead of staying in this one (a worker thread gave back too little).
 */
function initializePglite(path: string): Promise<void> {
  const script = join(PACKAGE_DIR, "src", "pglite-init.mjs");
  const args = JSON.stringify({ path, startParams: PGLITE_START_PARAMS, migrationsFolder: MIGRATIONS_FOLDER });
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, args], { maxBuffer: 1024 * 1024 }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`creating the embedded database in ${path} failed: ${stderr || error.message}`));
      else resolve();
    });
  });
}

async function openPostgres(url: string, options: OpenDatabaseOptions): Promise<Database> {
  await migratePostgres(url);
  const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 10 });
  // A connection can die while its client is checked out (between the statements of a transaction,
  // say); pg-pool listens for errors on idle clients only, and an 'error' event nobody listens to
  // ends the process. Every client gets a listener; the statement in flight fails on its own.
  pool.on("connect", (client) => client.on("error", (error) => options.onPoolError?.(error)));
  pool.on("error", () => {}); // an idle client's error, already reported by its own listener
  returnEndedConnections(pool);
  const db = drizzlePg(pool, { schema });
  let closed = false;
  return {
    db: db as unknown as Db,
    kind: "postgres",
    url,
    close: async () => {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}

/**
 * A checked-out connection that ends (terminated by the server, the network
 * gone) goes back to the pool at once, as broken, and a later release of it
 * does nothing. Without this a holder that never releases a dead connection
 * keeps it counted forever, and `pool.end()` never returns: drizzle's
 * transaction sends BEGIN before its try/finally, so a connection that dies
 * between the checkout and BEGIN is never released.
 */
function returnEndedConnections(pool: pg.Pool): void {
  const connect = pool.connect.bind(pool) as (...args: unknown[]) => unknown;
  const connectReturning = async (): Promise<pg.PoolClient> => {
    const client = (await connect()) as pg.PoolClient;
    const release = client.release;
    let released = false;
    const onEnd = () => giveBack(new Error("the connection ended while it was checked out"));
    const giveBack = (error?: Error | boolean) => {
      if (released) return;
      released = true;
      client.removeListener("end", onEnd);
      release(error);
    };
    client.release = giveBack;
    client.once("end", onEnd);
    return client;
  };
  // pool.query checks out through the callback form and releases on its own; only the promise
  // form hands a connection to a holder.
  pool.connect = ((...args: unknown[]) =>
    args.length > 0 ? connect(...args) : connectReturning()) as typeof pool.connect;
}

async function migratePostgres(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    await migratePg(drizzlePg(client, { schema }), { migrationsFolder: MIGRATIONS_FOLDER });
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]).catch(() => {});
    await client.end();
  }
}

/** Runs raw SQL and returns its rows (both drivers answer with `{ rows }`). */
export async function queryRows<T>(db: Db, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown as { rows: T[] };
  return result.rows;
}
