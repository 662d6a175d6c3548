/** The table printed at the end of a run. */
import type { Row } from "./section";

export interface TableLine extends Row {
  section: string;
}

function pad(text: string, width: number): string {
  return text + " ".repeat(Math.max(0, width - [...text].length));
}

export function renderTable(lines: TableLine[]): string {
  const cells = lines.map((l) => [
    l.section,
    l.metric,
    l.value,
    l.target ?? "",
    l.met === undefined ? "" : l.met ? "met" : "MISSED",
  ]);
  const header = ["section", "metric", "value", "target", ""];
  const widths = header.map((h, i) => Math.max([...h].length, ...cells.map((c) => [...c[i]!].length)));
  const line = (row: string[]) =>
    row
      .map((cell, i) => pad(cell, widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)].join("\n");
}
