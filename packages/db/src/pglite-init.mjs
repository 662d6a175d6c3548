// Creates a new PGlite data directory (initdb) and applies the migrations in
// a child process, so that the memory this takes (hundreds of MB of
// WebAssembly) ends with that process instead of staying in the server's.
// Arguments: a JSON object {path, startParams, migrationsFolder}. See client.ts.
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";

const { path, startParams, migrationsFolder } = JSON.parse(process.argv[2]);
const client = await PGlite.create(path, { startParams });
await migrate(drizzle(client), { migrationsFolder });
await client.close();
