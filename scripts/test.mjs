#!/usr/bin/env node
// `npm test`: runs the whole suite. Parts that need a system service
// (Postgres, bubblewrap, Chromium) or an agent CLI (Claude Code, Codex: optional
// npm dependencies) run when it is present; when it is not,
// this says loudly what was left out. With UMBRA_TEST_REQUIRE_ALL=1 (CI)
// a missing service is an error instead.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";

const requireAll = process.env.UMBRA_TEST_REQUIRE_ALL === "1";
const postgresUrl = process.env.TEST_DATABASE_URL ?? "postgres://umbra:umbra@127.0.0.1:5432/umbra";

async function postgresReachable() {
  const client = new pg.Client({ connectionString: postgresUrl, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

const has = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;

/** Whether the agent CLIs are installed and run, as scripts/agent-clis.ts finds them. */
function agentClis() {
  const check = spawnSync(process.execPath, ["--import", "tsx", "scripts/agent-clis.ts"], { encoding: "utf8" });
  try {
    return JSON.parse(check.stdout);
  } catch {
    const why = { ok: false, reason: `scripts/agent-clis.ts failed: ${check.stderr.trim().split("\n").at(-1)}` };
    return { "claude-code": why, codex: why };
  }
}
const clis = agentClis();
const services = [
  { name: "Postgres", ok: await postgresReachable(), leftOut: `tests against a real Postgres (${postgresUrl})` },
  { name: "bubblewrap", ok: has("bwrap"), leftOut: "the sandboxed `process` VM provider (sidecars run unsandboxed)" },
  { name: "Chromium", ok: existsSync("/usr/bin/chromium"), leftOut: "the browser end-to-end tests" },
  {
    name: "Claude Code CLI",
    ok: clis["claude-code"].ok,
    leftOut: `the claude-code agent's tests against the real CLI (${clis["claude-code"].reason})`,
  },
  {
    name: "Codex CLI",
    ok: clis.codex.ok,
    leftOut: `the codex agent's tests against the real CLI (${clis.codex.reason})`,
  },
];
const missing = services.filter((s) => !s.ok);
if (missing.length > 0) {
  const lines = missing.map((s) => `  - ${s.name} not found: left out ${s.leftOut}`);
  const banner = [
    "",
    "!".repeat(78),
    "!! NOT EVERYTHING IS TESTED ON THIS MACHINE",
    ...lines,
    "!! `.ci/run` installs them all and makes their tests mandatory.",
    "!".repeat(78),
    "",
  ];
  console.error(banner.join("\n"));
  if (requireAll) {
    console.error("UMBRA_TEST_REQUIRE_ALL=1: refusing to run with services missing");
    process.exit(1);
  }
}

const env = {
  ...process.env,
  UMBRA_TEST_POSTGRES: services[0].ok ? "1" : "0",
  UMBRA_TEST_BWRAP: services[1].ok ? "1" : "0",
  UMBRA_TEST_CHROMIUM: services[2].ok ? "1" : "0",
  UMBRA_TEST_CLAUDE_CODE: services[3].ok ? "1" : "0",
  UMBRA_TEST_CODEX: services[4].ok ? "1" : "0",
};
mkdirSync("test-artifacts", { recursive: true });
const report = join("test-artifacts", "vitest-report.json");
const result = spawnSync(
  "npx",
  ["vitest", "run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...process.argv.slice(2)],
  { stdio: "inherit", env },
);
try {
  const summary = JSON.parse(readFileSync(report, "utf8"));
  const skipped = summary.numPendingTests + summary.numTodoTests;
  console.log(`\n${summary.numPassedTests} passed, ${summary.numFailedTests} failed, ${skipped} skipped`);
  if (missing.length > 0) console.error(`(left out: ${missing.map((s) => s.name).join(", ")})`);
} catch {
  // no report: vitest failed before running; its exit status says so
}
// The reliability tests (fault injection, fuzzing, auth) append what they tried to
// test-artifacts/reliability.jsonl; when this run wrote to it, RELIABILITY.md is made from it.
const reliabilityLog = join("test-artifacts", "reliability.jsonl");
if (existsSync(reliabilityLog)) {
  let startedAt = 0;
  try {
    startedAt = JSON.parse(readFileSync(report, "utf8")).startTime ?? 0;
  } catch {
    // no vitest report: judge by the records alone
  }
  const { mtimeMs } = await import("node:fs").then((fs) => fs.statSync(reliabilityLog));
  if (mtimeMs >= startedAt) spawnSync(process.execPath, ["scripts/reliability-report.mjs"], { stdio: "inherit" });
}
process.exit(result.status ?? 1);
