/**
 * `npm run bench`: measures the task lifecycle's speed and cost, prints a
 * table and writes every figure to bench/results/latest.json (BENCHMARKS.md
 * explains the method). Each section — each variant of one, where it has
 * them — runs in a fresh process (section-process.ts).
 *
 *   npm run bench                        every section, full counts
 *   npm run bench -- --quick             smaller counts, to try it out
 *   npm run bench -- --only due-query    one section (repeatable)
 *   npm run bench -- --only save-memory/remote-postgres   one variant of one
 *                                        (the only way to run a variant a
 *                                        section runs on request only)
 *   npm run bench -- --out file.json     write the figures elsewhere
 *
 * Runs with --quick or --only write bench/results/scratch.json unless --out
 * says otherwise, so trying a section never replaces the recorded figures.
 */
import { fork } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { cpuShare, readCpu, waitForQuiet } from "./lib/cpu";
import { machineInfo } from "./lib/machine";
import { renderTable, type TableLine } from "./lib/report";
import type { Section } from "./lib/section";
import { SECTIONS } from "./lib/sections";
import type { SectionMessage } from "./section-process";

const HERE = dirname(fileURLToPath(import.meta.url));
/** A section starts once other processes use less than this many cores (or after QUIET_WAIT_MS). */
const QUIET_CORES = 0.25;
const QUIET_WAIT_MS = 60_000;
const RESULTS_DIR = join(HERE, "results");

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string", multiple: true },
    out: { type: "string" },
  },
});
const quick = values.quick ?? false;
const only = values.only ?? [];
/**
 * Whether this run takes a section's variant: `--only name` takes them all,
 * `--only name/variant` one; a variant the section runs on request only is
 * taken only when named.
 */
const wanted = (section: Section, variant: string | undefined) => {
  const named = variant !== undefined && only.includes(`${section.name}/${variant}`);
  if (variant !== undefined && section.onRequest?.includes(variant)) return named;
  return only.length === 0 || only.includes(section.name) || named;
};
const keys = SECTIONS.flatMap((s) => [s.name, ...(s.variants ?? []).map((v) => `${s.name}/${v}`)]);
const unknown = only.filter((key) => !keys.includes(key));
if (unknown.length > 0) {
  console.error(`unknown section(s): ${unknown.join(", ")}; sections: ${keys.join(", ")}`);
  process.exit(2);
}
const selected = SECTIONS.filter((s) => (s.variants ?? [undefined]).some((v) => wanted(s, v)));
const out = resolve(values.out ?? join(RESULTS_DIR, quick || only.length > 0 ? "scratch.json" : "latest.json"));

function runSection(name: string, variant: string | undefined): Promise<SectionMessage> {
  const args = [name, ...(variant ? ["--variant", variant] : []), ...(quick ? ["--quick"] : [])];
  return new Promise((resolvePromise) => {
    const child = fork(join(HERE, "section-process.ts"), args, {
      execArgv: ["--import", "tsx", "--expose-gc"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    let message: SectionMessage | null = null;
    child.on("message", (m) => {
      message = m as SectionMessage;
    });
    child.on("exit", (code, signal) =>
      resolvePromise(message ?? { ok: false, error: `section process exited (${signal ?? `code ${code}`})` }),
    );
  });
}

const started = performance.now();
const machine = machineInfo();
console.log(
  `Umbra benchmarks${quick ? " (quick)" : ""}: ${selected.map((s) => s.name).join(", ")}\n` +
    `${machine.cores} cores (${machine.cpuModel}), ${(machine.memoryBytes / 2 ** 30).toFixed(1)} GiB, node ${machine.node}`,
);

const lines: TableLine[] = [];
const results: Record<string, unknown> = {};
let failed = false;
for (const section of selected) {
  for (const variant of section.variants ?? [undefined]) {
    if (!wanted(section, variant)) continue;
    const sectionStarted = performance.now();
    const key = variant ? `${section.name}/${variant}` : section.name;
    console.log(`\n== ${section.title}${variant ? `, ${variant}` : ""} (${key})`);
    const quiet = await waitForQuiet(QUIET_CORES, QUIET_WAIT_MS);
    if (quiet.waitedMs > 1500) {
      console.log(`  waited ${(quiet.waitedMs / 1000).toFixed(0)} s for other processes to calm down`);
    }
    const cpuBefore = readCpu();
    const message = await runSection(section.name, variant);
    const cpu = cpuShare(cpuBefore, readCpu());
    const seconds = Math.round((performance.now() - sectionStarted) / 100) / 10;
    const host = { otherCoresBefore: quiet.otherCores, cpuDuring: cpu };
    console.log(`  CPU: this run ${cpu.ownCores} cores on average, other processes ${cpu.otherCores}`);
    if (message.ok) {
      console.log(`  done in ${seconds} s`);
      lines.push(...message.result.rows.map((row) => ({ section: section.name, ...row })));
      results[key] = { title: section.title, seconds, host, ...message.result };
    } else {
      failed = true;
      console.error(`  FAILED: ${message.error}`);
      lines.push({
        section: section.name,
        metric: `${variant ?? ""} FAILED`.trim(),
        value: message.error.split("\n")[0]!,
      });
      results[key] = { title: section.title, seconds, host, error: message.error };
    }
  }
}

const seconds = Math.round((performance.now() - started) / 1000);
console.log(`\n${renderTable(lines)}\n\ntotal ${seconds} s`);
mkdirSync(dirname(out), { recursive: true });
const report = { machine, quick, sections: selected.map((s) => s.name), seconds, table: lines, results };
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
console.log(`figures written to ${out}`);
process.exit(failed ? 1 : 0);
