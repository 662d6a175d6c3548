/** What every benchmark section is and returns. */

export interface BenchOptions {
  /** Smaller counts, for trying the benchmarks out. */
  quick: boolean;
  /** Which of the section's variants to run (see Section.variants). */
  variant?: string;
  log(message: string): void;
}

/** One line of the final table. */
export interface Row {
  metric: string;
  value: string;
  /** The target, when the issue set one, e.g. "< 25 ms". */
  target?: string;
  met?: boolean;
}

export interface SectionResult {
  rows: Row[];
  /** Every figure behind the rows, for bench/results/*.json. */
  data: Record<string, unknown>;
}

export interface Section {
  /** The name `--only` takes. */
  name: string;
  title: string;
  /** Parts that each run in a fresh process of their own (e.g. so their memory figures don't mix). */
  variants?: readonly string[];
  /**
   * Of `variants`, those only an `--only` naming them runs (`name/variant`):
   * figures that explain another, too slow to take in every run.
   */
  onRequest?: readonly string[];
  run(options: BenchOptions): Promise<SectionResult>;
}
