import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { SidecarClient } from "@repo/workspace";
import { sandboxMemory } from "../../bench/lib/memory";
import { ProcessVmProvider as OldProvider } from "./src/execution/vm/basetmp/process-provider";
import { ProcessVmProvider as NewProvider } from "./src/execution/vm/process/process-provider";

const log: any = {
  info: () => {},
  warn: () => {},
  error: (f: any, m: any) => console.log("ERROR", m, f?.logTail),
  child: () => log,
};
const bundle = "/work/wt/sandbox/apps/sidecar/dist/sidecar.mjs";
const rounds = Number(process.argv[2] ?? 5);
const results: Record<string, { start: number[]; cmd: number[]; rss: number[]; pss: number[]; procs: number[] }> = {};
for (let round = 0; round < rounds; round++) {
  for (const [name, Provider] of [
    ["before", OldProvider],
    ["after", NewProvider],
  ] as const) {
    const dataDir = mkdtempSync("/tmp/umbra-measure-");
    const provider = new (Provider as any)({ dataDir, sidecarBundlePath: bundle, logger: log });
    const token = randomBytes(24).toString("hex");
    const t0 = performance.now();
    const handle = await provider.create({ taskId: "m1", token, labels: {} });
    const client = new SidecarClient({ endpoint: handle.endpoint, token });
    await client.health();
    const start = performance.now() - t0;
    await client.runCommand("true");
    const t1 = performance.now();
    for (let i = 0; i < 5; i++) await client.runCommand("true");
    const cmd = (performance.now() - t1) / 5;
    await new Promise((r) => setTimeout(r, 300));
    const [mem] = sandboxMemory(dataDir);
    const r = (results[name] ??= { start: [], cmd: [], rss: [], pss: [], procs: [] });
    r.start.push(start);
    r.cmd.push(cmd);
    r.rss.push(mem!.rssBytes / 2 ** 20);
    r.pss.push(mem!.pssBytes / 2 ** 20);
    r.procs.push(mem!.processes);
    await provider.destroy("m1");
    await provider.close?.();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const [name, r] of Object.entries(results)) {
  console.log(
    name,
    `start ${median(r.start).toFixed(0)} ms (min ${Math.min(...r.start).toFixed(0)})`,
    `per command ${median(r.cmd).toFixed(0)} ms`,
    `RSS ${median(r.rss).toFixed(1)} MiB`,
    `PSS ${median(r.pss).toFixed(1)} MiB`,
    `processes ${median(r.procs)}`,
  );
}
