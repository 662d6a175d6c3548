/**
 * `npm run db:push`: pushes the schema straight to the database without a
 * migration (the seed's `db push`), for development against a scratch
 * database. Production start-up applies the committed migrations instead.
 */
import { spawnSync } from "node:child_process";

const url = process.env.DATABASE_URL;
const args = ["drizzle-kit", "push", "--dialect=postgresql", "--schema=./src/schema.ts", "--force"];
if (url) {
  args.push(`--url=${url}`);
} else {
  process.stderr.write("db:push needs DATABASE_URL (the embedded database applies migrations when opened)\n");
  process.exit(2);
}
const result = spawnSync("npx", args, { stdio: "inherit" });
process.exit(result.status ?? 1);
