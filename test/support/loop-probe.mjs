/**
 * Preloaded into a server process (NODE_OPTIONS=--import=<this file>) to see
 * how long its own work holds the event loop, apart from how long the machine
 * keeps it waiting for a core. Every 10 ms a timer notes the wall time since
 * its last run, the CPU time the main thread used meanwhile and the time it
 * waited for a core (the first two fields of /proc/self/task/<pid>/schedstat,
 * in ns). A late timer with the main thread busy all along is the server's
 * own doing; one that waited for a core is the machine (other processes);
 * the rest of a late timer is the thread blocked in the kernel.
 *
 * On exit the samples go to UMBRA_LOOP_PROBE_FILE as JSON:
 * [[epochMs, wallMs, mainThreadCpuMs, waitedForCoreMs], ...].
 */
import { readFileSync, writeFileSync } from "node:fs";

const file = process.env.UMBRA_LOOP_PROBE_FILE;
if (file) {
  const schedstat = `/proc/self/task/${process.pid}/schedstat`;
  /** [cpu, waited for a core], ns. */
  const read = () => readFileSync(schedstat, "utf8").split(" ").slice(0, 2).map(Number);
  const ms = (ns) => Math.round(ns / 1e5) / 10;
  const samples = [];
  let lastWall = performance.now();
  let [lastCpu, lastWait] = read();
  setInterval(() => {
    const wall = performance.now();
    const [cpu, wait] = read();
    samples.push([Date.now(), Math.round((wall - lastWall) * 10) / 10, ms(cpu - lastCpu), ms(wait - lastWait)]);
    lastWall = wall;
    lastCpu = cpu;
    lastWait = wait;
  }, 10).unref();
  process.on("exit", () => writeFileSync(file, JSON.stringify(samples)));
}
