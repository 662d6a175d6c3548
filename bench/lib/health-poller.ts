/**
 * API stalls, seen from outside: a process of its own GETs /api/health every
 * `intervalMs`, one request at a time (the next one `intervalMs` after the
 * start of the last, or right away when that one took longer), and keeps
 * each request's start and latency, at most `maxSamples` of them. In the
 * benchmark's own process a poller would share the server's thread: a
 * blocked event loop would hold back its timer as well, and the stall would
 * go unseen.
 *
 * The parent (HealthPoller) waits for `{ ready }` (the first request
 * answered) and ends the polling with `{ stop }`; the child answers
 * `{ samples }` and exits. Starts are epoch ms (epochMs(): the same clock in
 * both processes), so the parent can set them against what it did meanwhile
 * (StallTimeline): phases, and its own blocking work on the server's thread
 * (a `sync`, a timed `git worktree add`, a query of the database), which is
 * no stall of the server's and is left out.
 *
 *   child: node --import tsx bench/lib/health-poller.ts <server url> <intervalMs> <maxSamples>
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type Summary, summarize } from "./stats";

/** Now, in epoch ms with sub-ms precision; comparable across processes of one host. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

export interface HealthSamples {
  /** When each request started, epoch ms. */
  startMs: number[];
  /** How long each took until its body was read, ms. */
  latencyMs: number[];
  /** Requests that failed (counted, not in the arrays). */
  errors: number;
  /** Whether polling stopped at maxSamples before it was told to. */
  truncated: boolean;
}

type Reply = { ready: true } | { samples: HealthSamples } | { error: string };

/** The parent's handle on a poller process. */
export class HealthPoller {
  private pending: ((reply: Reply) => void) | null = null;

  private constructor(private readonly child: ChildProcess) {
    child.on("message", (reply) => this.settle(reply as Reply));
    child.on("exit", (code, signal) => this.settle({ error: `health poller exited (${signal ?? `code ${code}`})` }));
  }

  /** Starts polling `url`/api/health; resolves once the first request was answered. */
  static async start(url: string, { intervalMs = 20, maxSamples = 90_000 } = {}): Promise<HealthPoller> {
    const child = fork(fileURLToPath(import.meta.url), [url, String(intervalMs), String(maxSamples)], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const poller = new HealthPoller(child);
    const ready = await poller.next();
    if ("error" in ready) throw new Error(ready.error);
    return poller;
  }

  /** Ends the polling; resolves with every sample once the child has exited. */
  async stop(): Promise<HealthSamples> {
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    const reply = this.next();
    this.child.send({ stop: true });
    const answer = await reply;
    await exited;
    if (!("samples" in answer))
      throw new Error("error" in answer ? answer.error : "the health poller answered out of turn");
    return answer.samples;
  }

  /** Kills the child if it still runs (after a failure). */
  close(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill();
  }

  private next(): Promise<Reply> {
    return new Promise((resolve) => {
      this.pending = resolve;
    });
  }

  private settle(reply: Reply): void {
    const done = this.pending;
    this.pending = null;
    done?.(reply);
  }
}

/** A span of the parent's own work, left out of the figures. */
interface Aside {
  what: string;
  fromMs: number;
  toMs: number;
}

export interface Stall {
  /** From the first sample, ms. */
  atMs: number;
  latencyMs: number;
  phase: string;
}

export interface StallReport {
  samples: number;
  /** Samples left out: they overlapped the benchmark's own work on the server's thread. */
  excluded: number;
  errors: number;
  truncated: boolean;
  latency: Summary;
  /** Samples over `thresholdMs`. */
  over: number;
  thresholdMs: number;
  /** The slowest samples kept, slowest first. */
  worst: Stall[];
  /** Per phase: samples kept, the slowest, and how many were over the threshold. */
  byPhase: Record<string, { samples: number; maxMs: number; over: number }>;
  /** What the benchmark did aside, and for how long, ms. */
  asides: { what: string; ms: number }[];
}

/** What the benchmark did while the poller ran: named phases, and its own work to leave out. */
export class StallTimeline {
  private readonly phases: { name: string; fromMs: number }[] = [];
  private readonly asides: Aside[] = [];

  /** From now on, samples belong to phase `name`. */
  phase(name: string): void {
    this.phases.push({ name, fromMs: epochMs() });
  }

  /** Runs `work` (which occupies the server's thread), leaving the samples that overlap it out. */
  async aside<T>(what: string, work: () => T | Promise<T>): Promise<T> {
    const fromMs = epochMs();
    try {
      return await work();
    } finally {
      this.asides.push({ what, fromMs, toMs: epochMs() });
    }
  }

  report(samples: HealthSamples, thresholdMs = 100, worstCount = 10): StallReport {
    const kept: { startMs: number; latencyMs: number; phase: string }[] = [];
    let excluded = 0;
    for (let i = 0; i < samples.startMs.length; i++) {
      const startMs = samples.startMs[i]!;
      const latencyMs = samples.latencyMs[i]!;
      // A few ms either side: the two processes read the clock at slightly different moments.
      if (this.asides.some((a) => startMs <= a.toMs + 5 && startMs + latencyMs >= a.fromMs - 5)) {
        excluded++;
        continue;
      }
      const phase = this.phases.findLast((p) => p.fromMs <= startMs)?.name ?? "before the first phase";
      kept.push({ startMs, latencyMs, phase });
    }
    const first = samples.startMs[0] ?? 0;
    const byPhase: StallReport["byPhase"] = {};
    for (const sample of kept) {
      byPhase[sample.phase] ??= { samples: 0, maxMs: 0, over: 0 };
      const entry = byPhase[sample.phase]!;
      entry.samples++;
      entry.maxMs = Math.max(entry.maxMs, Math.round(sample.latencyMs * 10) / 10);
      if (sample.latencyMs > thresholdMs) entry.over++;
    }
    return {
      samples: samples.startMs.length,
      excluded,
      errors: samples.errors,
      truncated: samples.truncated,
      latency: summarize(kept.map((s) => s.latencyMs)),
      over: kept.filter((s) => s.latencyMs > thresholdMs).length,
      thresholdMs,
      worst: [...kept]
        .sort((a, b) => b.latencyMs - a.latencyMs)
        .slice(0, worstCount)
        .map((s) => ({
          atMs: Math.round(s.startMs - first),
          latencyMs: Math.round(s.latencyMs * 10) / 10,
          phase: s.phase,
        })),
      byPhase,
      asides: this.asides.map((a) => ({ what: a.what, ms: Math.round(a.toMs - a.fromMs) })),
    };
  }
}

/** The child: polls until told to stop or `maxSamples` were taken. */
function poll(url: string, intervalMs: number, maxSamples: number): void {
  const samples: HealthSamples = { startMs: [], latencyMs: [], errors: 0, truncated: false };
  let stopping = false;
  let ready = false;
  let finish: (() => void) | null = null;
  const stopped = new Promise<void>((resolve) => {
    finish = resolve;
  });
  process.on("message", (message: { stop?: true }) => {
    if (message.stop) {
      stopping = true;
      finish?.();
    }
  });
  process.on("disconnect", () => process.exit(0));
  void (async () => {
    while (!stopping) {
      if (samples.startMs.length >= maxSamples) {
        samples.truncated = true;
        await stopped;
        break;
      }
      const start = epochMs();
      try {
        const response = await fetch(`${url}/api/health`);
        await response.text();
        if (!response.ok) throw new Error(`answered ${response.status}`);
        samples.startMs.push(start);
        samples.latencyMs.push(epochMs() - start);
        if (!ready) {
          ready = true;
          process.send!({ ready: true });
        }
      } catch (error) {
        samples.errors++;
        if (!ready && samples.errors >= 50) {
          process.send!({ error: `GET /api/health failed 50 times: ${String(error)}` }, () => process.exit(1));
          return;
        }
      }
      const wait = start + intervalMs - epochMs();
      if (wait > 0) await Promise.race([new Promise((resolve) => setTimeout(resolve, wait)), stopped]);
    }
    process.send!({ samples }, () => process.exit(0));
  })();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  poll(process.argv[2]!, Number(process.argv[3]), Number(process.argv[4]));
}
