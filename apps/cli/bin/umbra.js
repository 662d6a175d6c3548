#!/usr/bin/env node
// The `umbra` command: loads the TypeScript sources through tsx, like the
// server, so the CLI needs no build step (`npx umbra` works after `npm ci`).
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/main.ts");
process.exitCode = await main(process.argv.slice(2));
