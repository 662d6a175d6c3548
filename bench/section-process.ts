/**
 * Runs one benchmark section in a process of its own and sends its result to
 * the parent (bench/run.ts) over IPC. A fresh process per section keeps the
 * memory figures honest — an embedded database or a server of an earlier
 * section does not linger in this one's RSS — and a crash stays contained.
 *
 *   node --import tsx bench/section-process.ts <section> [--variant <name>] [--quick]
 */
import { parseArgs } from "node:util";
import { removeTempDirs } from "./lib/repos";
import type { SectionResult } from "./lib/section";
import { SECTIONS } from "./lib/sections";

export type SectionMessage = { ok: true; result: SectionResult } | { ok: false; error: string };

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { quick: { type: "boolean", default: false }, variant: { type: "string" } },
});
const section = SECTIONS.find((s) => s.name === positionals[0]);
let message: SectionMessage;
try {
  if (!section) throw new Error(`unknown section ${positionals[0]}`);
  const result = await section.run({
    quick: values.quick ?? false,
    variant: values.variant,
    log: (line) => console.log(`  ${line}`),
  });
  message = { ok: true, result };
} catch (error) {
  message = { ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) };
} finally {
  removeTempDirs();
}
if (process.send) await new Promise<void>((resolve) => process.send!(message, () => resolve()));
else console.log(JSON.stringify(message, null, 2));
process.exit(message.ok ? 0 : 1);
