/** The machine a run came from, recorded with its figures. */
import { execFileSync } from "node:child_process";
import { cpus, release, totalmem } from "node:os";

function command(file: string, args: string[]): string | null {
  try {
    return execFileSync(file, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

export interface MachineInfo {
  date: string;
  cores: number;
  cpuModel: string;
  memoryBytes: number;
  node: string;
  kernel: string;
  git: string | null;
  bubblewrap: string | null;
  commit: string | null;
}

export function machineInfo(): MachineInfo {
  return {
    date: new Date().toISOString(),
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryBytes: totalmem(),
    node: process.version,
    kernel: `${process.platform} ${release()}`,
    git: command("git", ["--version"]),
    bubblewrap: command("bwrap", ["--version"]),
    commit: command("git", ["rev-parse", "--short", "HEAD"]),
  };
}
