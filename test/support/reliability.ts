/**
 * Structured records of what the reliability tests tried and what happened,
 * one JSON line each in test-artifacts/reliability.jsonl;
 * scripts/reliability-report.mjs turns them into RELIABILITY.md.
 *
 * A record is written whether the case passes or fails, so the report shows
 * failures too. Records of one vitest run share `run` (the vitest process id,
 * the parent of every worker), so the report can tell runs apart.
 */
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ARTIFACTS = fileURLToPath(new URL("../../test-artifacts", import.meta.url));
export const RELIABILITY_LOG = join(ARTIFACTS, "reliability.jsonl");

export type ReliabilityCategory = "fault-injection" | "fuzzing" | "auth" | "hostile";

export interface ReliabilityRecord {
  run: number;
  at: string;
  category: ReliabilityCategory;
  /** The fault or bad input that was tried. */
  fault: string;
  /** What the system did about it. */
  outcome: string;
  pass: boolean;
  /** Test file the record comes from. */
  file: string;
  ms: number;
}

export function appendReliabilityRecord(record: Omit<ReliabilityRecord, "run" | "at">): void {
  mkdirSync(ARTIFACTS, { recursive: true });
  const line: ReliabilityRecord = { run: process.ppid, at: new Date().toISOString(), ...record };
  appendFileSync(RELIABILITY_LOG, `${JSON.stringify(line)}\n`);
}

/**
 * Runs one reliability case and records it. `observe` collects what happened
 * (joined into the outcome); a thrown error makes the record a failure and is
 * rethrown, so the test still fails.
 */
export async function reliabilityCase(
  category: ReliabilityCategory,
  file: string,
  fault: string,
  body: (observe: (what: string) => void) => Promise<void>,
): Promise<void> {
  const notes: string[] = [];
  const started = Date.now();
  try {
    await body((what) => notes.push(what));
    appendReliabilityRecord({ category, file, fault, outcome: notes.join("; "), pass: true, ms: Date.now() - started });
  } catch (error) {
    const reason = error instanceof Error ? error.message.split("\n")[0]! : String(error);
    notes.push(`FAILED: ${reason}`);
    appendReliabilityRecord({
      category,
      file,
      fault,
      outcome: notes.join("; "),
      pass: false,
      ms: Date.now() - started,
    });
    throw error;
  }
}
