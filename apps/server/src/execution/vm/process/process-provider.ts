/**
 * The `process` VM provider: each task's sandbox is a sidecar process on this
 * host, confined by bubblewrap (see process/bubblewrap.ts), listening on a
 * loopback port. The single-host default, and what the test-suite drives.
 *
 * Layout: `${dataDir}/vms/<taskId>/` holds `workspace/` (the only directory
 * the sandbox can write), `vm.json` (pid, labels, start time; the port once
 * the sidecar listens — the record is written as soon as the sandbox has a
 * pid, so one whose server died while it started is still found) and
 * `sidecar.log` (the sidecar's stderr).
 *
 * Invariants:
 * - The externalId is the task id; one sandbox per task at a time.
 * - A sandbox counts as running only while its recorded process is alive, not
 *   a zombie, and still carries the sandbox's marker on its command line, so
 *   a reused pid is never mistaken for a sandbox (or killed).
 * - Sandboxes outlive the server process: list(), status() and destroy() work
 *   from vm.json, including for sandboxes an earlier server started.
 * - destroy() is idempotent and leaves nothing: the process group is ended
 *   (SIGTERM, then SIGKILL), under bubblewrap the sandbox's pid namespace goes
 *   with it, and the directory is removed.
 * - Without bubblewrap the sidecar runs as a plain process with full access
 *   to the host's files; that is said loudly, once.
 * - VmSpec.mounts are bound at their targets under bubblewrap; a mount's
 *   source must be an existing directory, and without bubblewrap only
 *   mounts at their own path can be honoured (the host's files are all
 *   visible anyway).
 */
import { closeSync, openSync } from "node:fs";
import { mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { isAbsolute, join, normalize, resolve } from "node:path";
import { WorkspaceError } from "../../../errors";
import type { ProviderLogger, VmHandle, VmListing, VmMount, VmProvider, VmSpec, VmStatus } from "../types";
import { findOnPath } from "./bubblewrap";
import { launchSandbox } from "./launch";
import { hasLiveChildWithMarkers, isLiveProcess, isRunning, signalProcess, waitUntil } from "./proc";
import { readRecord, type SandboxRecord, writeRecord } from "./sandbox-record";

export interface ProcessVmProviderOptions {
  /** Umbra's data directory; sandboxes live under `${dataDir}/vms/<taskId>/`. */
  dataDir: string;
  /** The built sidecar, `apps/sidecar/dist/sidecar.mjs` (see ensureSidecarBundle). */
  sidecarBundlePath: string;
  /** Confine sandboxes with bubblewrap. Default: true when `bwrap` is on PATH. */
  useBubblewrap?: boolean;
  logger: ProviderLogger;
  /** The node binary that runs the sidecar. Default: the server's own (process.execPath). */
  nodePath?: string;
  /** Milliseconds create() waits for the sidecar to listen. Default 15000. */
  startTimeoutMs?: number;
  /** Milliseconds destroy() waits after SIGTERM before SIGKILL. Default 2000. */
  killGraceMs?: number;
}

const TASK_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const LOG_TAIL_BYTES = 2000;
let warnedUnsandboxed = false;

function validTaskId(taskId: string): boolean {
  return TASK_ID.test(taskId) && !taskId.includes("..");
}

export class ProcessVmProvider implements VmProvider {
  readonly name = "process" as const;
  readonly hostMounts = true;
  private readonly vmsDir: string;
  private readonly bundlePath: string;
  private readonly bubblewrap: boolean;
  private readonly nodePath: string;
  private readonly startTimeoutMs: number;
  private readonly killGraceMs: number;
  private readonly log: ProviderLogger;

  constructor(options: ProcessVmProviderOptions) {
    this.vmsDir = join(resolve(options.dataDir), "vms");
    this.bundlePath = resolve(options.sidecarBundlePath);
    this.bubblewrap = options.useBubblewrap ?? findOnPath("bwrap") !== null;
    this.nodePath = options.nodePath ?? process.execPath;
    this.startTimeoutMs = options.startTimeoutMs ?? 15_000;
    this.killGraceMs = options.killGraceMs ?? 2_000;
    this.log = options.logger.child({ provider: "process", bubblewrap: this.bubblewrap });
    if (!this.bubblewrap && !warnedUnsandboxed) {
      warnedUnsandboxed = true;
      this.log.warn(
        { hint: "install bubblewrap (bwrap) to confine sandboxes" },
        "UNSANDBOXED: remote workspaces run as plain processes that can read and write all of this host's files",
      );
    }
  }

  /** Whether sandboxes are confined with bubblewrap. */
  get sandboxed(): boolean {
    return this.bubblewrap;
  }

  async create(spec: VmSpec): Promise<VmHandle> {
    if (!validTaskId(spec.taskId))
      throw new WorkspaceError(`invalid task id for a sandbox: ${spec.taskId}`, null, false);
    if (!spec.token) throw new WorkspaceError("refusing to start a sidecar without a token", null, false);
    const dir = this.sandboxDir(spec.taskId);
    const log = this.log.child({ taskId: spec.taskId });
    const mounts = await this.checkMounts(spec.mounts ?? []);
    await this.clearStale(spec.taskId, dir);

    const workspace = join(dir, "workspace");
    await mkdir(workspace, { recursive: true });
    await mkdir(join(dir, "home"), { recursive: true, mode: 0o700 });
    await mkdir(join(dir, "tmp"), { recursive: true, mode: 0o700 });
    const logFd = openSync(join(dir, "sidecar.log"), "a", 0o600);
    const markers = [`--umbra-sandbox=${spec.taskId}`];
    const recordOf = (pid: number, launcherPid: number): SandboxRecord => ({
      version: 1,
      taskId: spec.taskId,
      pid,
      launcherPid,
      labels: spec.labels,
      startedAt: new Date().toISOString(),
      bubblewrap: this.bubblewrap,
      markers: [this.bundlePath, ...markers],
    });
    try {
      const launched = await launchSandbox({
        workspace,
        // Inside bubblewrap /tmp is the sandbox's private tmpfs; outside, keep everything in the sandbox dir.
        home: this.bubblewrap ? "/tmp" : join(dir, "home"),
        tmpDir: this.bubblewrap ? undefined : join(dir, "tmp"),
        token: spec.token,
        bundlePath: this.bundlePath,
        nodePath: this.nodePath,
        mounts,
        markers,
        bubblewrap: this.bubblewrap,
        logFd,
        startTimeoutMs: this.startTimeoutMs,
        // Recorded before the sidecar listens, so a server that dies meanwhile leaves a sandbox list() finds.
        onStarted: (pid, launcherPid) => writeRecord(dir, recordOf(pid, launcherPid)),
      });
      const endpoint = `http://127.0.0.1:${launched.port}`;
      const record: SandboxRecord = { ...recordOf(launched.pid, launched.child.pid!), port: launched.port, endpoint };
      await writeRecord(dir, record);
      log.info({ pid: record.pid, port: record.port }, "process_vm.created");
      return { provider: this.name, externalId: spec.taskId, endpoint };
    } catch (error) {
      const logTail = await this.logTail(dir);
      log.error({ err: error, logTail }, "process_vm.create_failed");
      await rm(dir, { recursive: true, force: true });
      throw new WorkspaceError(
        `sandbox for task ${spec.taskId} failed to start: ${(error as Error).message}`,
        null,
        true,
        {
          cause: error,
        },
      );
    } finally {
      closeSync(logFd);
    }
  }

  async status(externalId: string): Promise<VmStatus> {
    const record = validTaskId(externalId) ? await readRecord(this.sandboxDir(externalId)) : null;
    if (!record) return { state: "missing" };
    if (await this.isAlive(record)) return { state: "running" };
    return { state: "exited", detail: `sandbox process ${record.pid} is no longer running` };
  }

  async destroy(externalId: string): Promise<void> {
    if (!validTaskId(externalId)) return;
    const dir = this.sandboxDir(externalId);
    const record = await readRecord(dir);
    if (record && (await this.isAlive(record))) await this.terminate(record);
    await rm(dir, { recursive: true, force: true });
    if (record) this.log.info({ taskId: externalId, pid: record.pid }, "process_vm.destroyed");
  }

  async list(labels: Record<string, string>): Promise<VmListing[]> {
    let names: string[];
    try {
      names = await readdir(this.vmsDir);
    } catch {
      return [];
    }
    const listings: VmListing[] = [];
    for (const name of names.sort()) {
      if (!validTaskId(name)) continue;
      const record = await readRecord(this.sandboxDir(name));
      if (!record || !(await this.isAlive(record))) continue;
      if (!Object.entries(labels).every(([key, value]) => record.labels[key] === value)) continue;
      listings.push({ externalId: name, labels: record.labels, endpoint: record.endpoint });
    }
    return listings;
  }

  /** The mounts as bubblewrap gets them; refuses what it cannot bind as asked. */
  private async checkMounts(mounts: VmMount[]): Promise<VmMount[]> {
    const refuse = (mount: VmMount, why: string) =>
      new WorkspaceError(`cannot mount ${mount.source} at ${mount.target}: ${why}`, null, false);
    for (const mount of mounts) {
      for (const path of [mount.source, mount.target]) {
        if (!isAbsolute(path) || normalize(path) !== path || path === "/") {
          throw refuse(mount, "paths must be absolute, normalized and not /");
        }
      }
      const source = await stat(mount.source).catch(() => null);
      if (!source?.isDirectory()) throw refuse(mount, "the source is not a directory");
      if (!this.bubblewrap && mount.source !== mount.target) {
        throw refuse(mount, "without bubblewrap a directory can only be seen at its own path");
      }
    }
    return mounts;
  }

  private sandboxDir(taskId: string): string {
    return join(this.vmsDir, taskId);
  }

  private isAlive(record: SandboxRecord): Promise<boolean> {
    return isLiveProcess(record.pid, record.markers);
  }

  /** Refuses a task whose sandbox still runs; clears what a dead one left behind. */
  private async clearStale(taskId: string, dir: string): Promise<void> {
    const record = await readRecord(dir);
    if (record && (await this.isAlive(record))) {
      throw new WorkspaceError(`a sandbox for task ${taskId} is already running`, null, false);
    }
    await rm(dir, { recursive: true, force: true });
  }

  /**
   * SIGTERM to the sandbox's process group lets the sidecar stop its commands.
   * Under bubblewrap, once the sidecar is gone (or the grace period is over)
   * SIGKILL goes to the sandbox's init, whose death takes every process in its
   * pid namespace along; background processes would otherwise keep it alive.
   * Unsandboxed, SIGKILL goes to the group if it outlives the grace period.
   */
  private async terminate(record: SandboxRecord): Promise<void> {
    const { pid, markers } = record;
    signalProcess(pid, "SIGTERM", true);
    const sidecarGone = record.bubblewrap
      ? async () => !(await isRunning(pid)) || !(await hasLiveChildWithMarkers(pid, markers))
      : async () => !(await isRunning(pid));
    const graceful = await waitUntil(sidecarGone, this.killGraceMs);
    if (!graceful) this.log.warn({ taskId: record.taskId, pid }, "process_vm.kill_forced");
    if (await isLiveProcess(pid, markers)) {
      signalProcess(pid, "SIGKILL", true);
      signalProcess(pid, "SIGKILL", false);
    }
    if (!(await waitUntil(async () => !(await isRunning(pid)), 2000))) {
      throw new WorkspaceError(`sandbox process ${pid} of task ${record.taskId} survived SIGKILL`, null, true);
    }
  }

  private async logTail(dir: string): Promise<string> {
    try {
      const text = await readFile(join(dir, "sidecar.log"), "utf8");
      return text.slice(-LOG_TAIL_BYTES);
    } catch {
      return "";
    }
  }
}
