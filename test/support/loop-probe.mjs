/**
 * Preloaded into a server process (NODE_OPTIONS=--import=<this file>) to see
 * how long its own work holds the event loop, apart from how long the machine
 * keeps it waiting for a core. Every 10 ms a timer notes the wall time since
 * its last run and the CPU time the main thread used meanwhile (from
 * /proc/self/task/<pid>/schedstat, in ns). A late timer with the main thread
 * busy all along is the server's own doing; a late timer with an idle main
 * thread is the machine (other processes) or the kernel.
 *
 * On exit the samples go to UMBRA_LOOP_PROBE_FILE as JSON:
 * [[epochMs, wallMs, mainThreadCpuMs], ...].
 */
import { readFileSync, writeFileSync } from "node:fs";

const file = process.env.UMBRA_LOOP_PROBE_FILE;
if (file) {
  const schedstat = `/proc/self/task/${process.pid}/schedstat`;
  const cpuNs = () => Number(readFileSync(schedstat, "utf8").split(" ")[0]);
  const samples = [];
  let lastWall = performance.now();
  let lastCpu = cpuNs();
  setInterval(() => {
    const wall = performance.now();
    const cpu = cpuNs();
    samples.push([Date.now(), Math.round((wall - lastWall) * 10) / 10, Math.round((cpu - lastCpu) / 1e5) / 10]);
    lastWall = wall;
    lastCpu = cpu;
  }, 10).unref();
  process.on("exit", () => writeFileSync(file, JSON.stringify(samples)));
}
