/**
 * The `process` VM provider: each task's sandbox is a sidecar process on this
 * host, confined by bubblewrap (bubblewrap.ts) with a user, pid, network,
 * ipc, uts and cgroup namespace of its own, its own unprivileged host uid,
 * seccomp filters, cgroup limits and a disk of its own (sandbox-setup.ts).
 * The server reaches the sidecar over a unix socket in the sandbox's
 * directory; the sandbox reaches the outside only through the server's
 * egress proxy (egress/), on a second socket there.
 *
 * The uid split: every process of a sandbox runs as one unprivileged host
 * uid that owns its workspace. Inside, the sidecar (which holds the token)
 * and the agent's processes are separated by a second, nested sandbox
 * started by the sidecar (apps/sidecar agent-box.ts): its own pid and user
 * namespaces, a stricter seccomp filter, neither the sockets nor the
 * configuration mounted. The agent cannot see the sidecar's process, so it
 * cannot read its memory or environment (which holds no token anyway: the
 * token arrives through a pipe, launch.ts).
 *
 * Invariants:
 * - The externalId is the task id; one sandbox per task at a time.
 * - A sandbox counts as running only while its recorded process is alive, not
 *   a zombie, and still carries the sandbox's marker on its command line, so
 *   a reused pid is never mistaken for a sandbox (or killed).
 * - Sandboxes outlive the server process: list(), status() and destroy() work
 *   from vm.json, including for sandboxes an earlier server started, and a
 *   running sandbox that list() or status() reports has its egress served.
 * - destroy() is idempotent and leaves nothing: processes, egress listener,
 *   cgroups, mounted volume, uid claim and directory.
 * - Whatever this host cannot enforce is said loudly, once (sandbox-host.ts).
 * - VmSpec.mounts are bound at their targets in the sandbox and in the
 *   agent's sandbox inside it, writable ones owned by the sandbox's uid; a
 *   mount's source must be an existing directory, and without bubblewrap only
 *   mounts at their own path can be honoured (the host's files are all
 *   visible anyway).
 */
import { closeSync, openSync } from "node:fs";
import { mkdir, readdir, readFile, stat } from "node:fs/promises";
import { isAbsolute, join, normalize, resolve } from "node:path";
import { WorkspaceError } from "../../../errors";
import { defaultAllowedDomains, type NetworkPolicy } from "../egress/egress-policy";
import { EgressProxy } from "../egress/egress-proxy";
import type { ProviderLogger, VmHandle, VmListing, VmMount, VmProvider, VmSpec, VmStatus } from "../types";
import { bubblewrapArgs, INSIDE } from "./bubblewrap";
import { SandboxCgroupManager } from "./cgroups";
import { type LaunchSpec, launchSandbox, sidecarBundleArg } from "./launch";
import {
  hasLiveChildWithMarkers,
  isLiveProcess,
  isRunning,
  liveChildrenWithMarkers,
  signalProcess,
  waitUntil,
} from "./proc";
import { DEFAULT_SANDBOX_LIMITS, type ProcessVmProviderOptions } from "./provider-options";
import { detectHostSupport, type HostSupport, reportHostSupport } from "./sandbox-host";
import { readRecord, type SandboxRecord, writeRecord } from "./sandbox-record";
import {
  type PreparedSandbox,
  prepareSandbox,
  releaseSandbox,
  removeSandboxDir,
  type SandboxLimits,
  type SandboxPaths,
  sandboxPaths,
} from "./sandbox-setup";
import { DEFAULT_UID_BASE, SandboxUids } from "./sandbox-uid";

export { DEFAULT_SANDBOX_LIMITS, type ProcessVmProviderOptions, type SandboxLimits } from "./provider-options";

const TASK_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const LOG_TAIL_BYTES = 2000;

function validTaskId(taskId: string): boolean {
  return TASK_ID.test(taskId) && !taskId.includes("..");
}

export class ProcessVmProvider implements VmProvider {
  readonly name = "process" as const;
  readonly hostMounts = true;
  private readonly vmsDir: string;
  private readonly bundlePath: string;
  private readonly nodePath: string;
  private readonly startTimeoutMs: number;
  private readonly killGraceMs: number;
  private readonly log: ProviderLogger;
  private readonly host: HostSupport;
  private readonly network: NetworkPolicy;
  private readonly limits: SandboxLimits;
  private readonly egress: EgressProxy;
  private readonly cgroups: SandboxCgroupManager;
  private readonly uids: SandboxUids;
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(options: ProcessVmProviderOptions) {
    this.vmsDir = join(resolve(options.dataDir), "vms");
    this.bundlePath = resolve(options.sidecarBundlePath);
    this.nodePath = options.nodePath ?? process.execPath;
    this.startTimeoutMs = options.startTimeoutMs ?? 30_000;
    this.killGraceMs = options.killGraceMs ?? 2_000;
    this.host = detectHostSupport(options.useBubblewrap);
    this.log = options.logger.child({ provider: "process", bubblewrap: this.bubblewrap });
    reportHostSupport(this.host, this.log);
    this.network = options.network ?? { mode: "allowlist", allowedDomains: defaultAllowedDomains({}) };
    this.limits = { ...DEFAULT_SANDBOX_LIMITS, ...options.limits };
    this.egress = new EgressProxy({
      logger: this.log,
      onDenied: options.onEgressDenied,
      lookup: options.egressLookup,
    });
    this.cgroups = new SandboxCgroupManager(this.host.cgroups);
    this.uids = new SandboxUids(this.vmsDir, options.uidBase ?? DEFAULT_UID_BASE);
  }

  /**
   * Runs create and destroy of one task one after the other: a destroy that
   * overtook a create still starting would otherwise remove a directory the
   * create is about to mount a volume in.
   */
  private exclusive<T>(taskId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.inFlight.get(taskId) ?? Promise.resolve();
    const run = previous.then(work);
    const settled = run.then(
      () => {},
      () => {},
    );
    this.inFlight.set(taskId, settled);
    void settled.then(() => {
      if (this.inFlight.get(taskId) === settled) this.inFlight.delete(taskId);
    });
    return run;
  }

  private get releaseDeps() {
    return { uids: this.uids, cgroups: this.cgroups };
  }

  private get bubblewrap(): boolean {
    return this.host.bwrap !== null;
  }

  /** Whether sandboxes are confined with bubblewrap. */
  get sandboxed(): boolean {
    return this.bubblewrap;
  }

  /** Starts the task's sandbox; waits for a create or destroy of the same task in flight first. */
  create(spec: VmSpec): Promise<VmHandle> {
    return this.exclusive(spec.taskId, () => this.createNow(spec));
  }

  private async createNow(spec: VmSpec): Promise<VmHandle> {
    if (!validTaskId(spec.taskId))
      throw new WorkspaceError(`invalid task id for a sandbox: ${spec.taskId}`, null, false);
    if (!spec.token) throw new WorkspaceError("refusing to start a sidecar without a token", null, false);
    const paths = sandboxPaths(this.sandboxDir(spec.taskId));
    const log = this.log.child({ taskId: spec.taskId });
    const mounts = await this.checkMounts(spec.mounts ?? []);
    await this.clearStale(spec.taskId, paths.dir);
    const network = spec.network ?? this.network;
    const made: Partial<PreparedSandbox> = {};
    let logFd: number | null = null;
    try {
      const prepared = await this.prepare(spec.taskId, paths, network, mounts, made);
      logFd = openSync(join(paths.dir, "sidecar.log"), "a", 0o600);
      if (this.bubblewrap) await this.egress.attach(spec.taskId, paths.egressSocket, network);
      const markers = [`--umbra-sandbox=${spec.taskId}`];
      const recordOf = (pid: number, launcherPid: number): SandboxRecord => ({
        version: 2,
        taskId: spec.taskId,
        pid,
        launcherPid,
        labels: spec.labels,
        startedAt: new Date().toISOString(),
        bubblewrap: this.bubblewrap,
        markers: [sidecarBundleArg(this.bundlePath, this.bubblewrap), ...markers],
        uid: prepared.uid,
        cgroups: prepared.cgroups?.dirs ?? [],
        volumeImage: prepared.volumeImage,
        network,
      });
      const launched = await launchSandbox({
        ...this.launchSpec(paths, prepared, mounts, markers, logFd),
        token: spec.token,
        // Recorded from the moment the launcher exists (its command line carries the markers) and again once the
        // sandbox's leader is known, so a server that dies meanwhile leaves a sandbox list() finds and destroy() ends.
        onSpawned: (launcherPid) => writeRecord(paths.dir, recordOf(launcherPid, launcherPid)),
        onStarted: (pid, launcherPid) => writeRecord(paths.dir, recordOf(pid, launcherPid)),
      });
      const endpoint = `unix:${paths.sidecarSocket}`;
      await writeRecord(paths.dir, { ...recordOf(launched.pid, launched.child.pid!), endpoint });
      log.info({ pid: launched.pid, uid: prepared.uid }, "process_vm.created");
      return { provider: this.name, externalId: spec.taskId, endpoint };
    } catch (error) {
      await this.abandon(spec.taskId, paths.dir, made, log, error);
      throw new WorkspaceError(
        `sandbox for task ${spec.taskId} failed to start: ${(error as Error).message}`,
        null,
        true,
        { cause: error },
      );
    } finally {
      if (logFd !== null) closeSync(logFd);
    }
  }

  async status(externalId: string): Promise<VmStatus> {
    const record = validTaskId(externalId) ? await readRecord(this.sandboxDir(externalId)) : null;
    if (!record) return { state: "missing" };
    if (await this.isAlive(record)) {
      await this.serveEgress(record);
      return { state: "running" };
    }
    return { state: "exited", detail: `sandbox process ${record.pid} is no longer running` };
  }

  /** Ends the sandbox and removes all it had; waits for a create of the same task in flight first. */
  destroy(externalId: string): Promise<void> {
    return this.exclusive(externalId, () => this.destroyNow(externalId));
  }

  private async destroyNow(externalId: string): Promise<void> {
    if (!validTaskId(externalId)) return;
    const dir = this.sandboxDir(externalId);
    const record = await readRecord(dir);
    if (record && (await this.isAlive(record))) await this.terminate(record);
    await this.egress.detach(externalId);
    await releaseSandbox(dir, externalId, { uid: record?.uid, cgroupDirs: record?.cgroups }, this.releaseDeps);
    await removeSandboxDir(dir);
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
      await this.serveEgress(record);
      listings.push({ externalId: name, labels: record.labels, endpoint: record.endpoint });
    }
    return listings;
  }

  /** Stops serving the sandboxes' egress (they keep running; the next server serves them again). */
  async close(): Promise<void> {
    await this.egress.close();
  }

  private launchSpec(
    paths: SandboxPaths,
    prepared: PreparedSandbox,
    mounts: VmMount[],
    markers: string[],
    logFd: number,
  ): Omit<LaunchSpec, "token" | "onStarted"> {
    const common = { bundlePath: this.bundlePath, nodePath: this.nodePath, markers, logFd, cwd: paths.workspace };
    if (!this.bubblewrap) {
      return {
        ...common,
        startTimeoutMs: this.startTimeoutMs,
        confined: null,
        env: {
          HOME: join(paths.dir, "home"),
          TMPDIR: join(paths.dir, "tmp"),
          SIDECAR_WORKSPACE: paths.workspace,
          SIDECAR_SOCKET: paths.sidecarSocket,
        },
      };
    }
    const cgroupDirs: Record<string, string> = {};
    for (const controller of ["memory", "pids"] as const) {
      const dir = prepared.cgroups?.controllerDirs[controller];
      if (dir) cgroupDirs[controller] = dir;
    }
    const staged = prepared.uid !== null;
    const bwrap = bubblewrapArgs(
      {
        workspace: paths.workspace,
        volume: paths.volume,
        confDir: paths.conf,
        socketsDir: paths.sockets,
        cgroupDirs,
        bundlePath: this.bundlePath,
        nodePath: this.nodePath,
        seccomp: this.host.seccomp,
        mounts,
      },
      staged,
    );
    return {
      ...common,
      startTimeoutMs: this.startTimeoutMs,
      confined: {
        bubblewrapArgs: bwrap.args,
        bindSources: bwrap.bindSources,
        hostUid: prepared.uid,
        cgroupProcs: (prepared.cgroups?.dirs ?? []).map((dir) => join(dir, "cgroup.procs")),
        seccompFile: this.host.seccomp ? join(paths.conf, "sidecar.bpf") : null,
        setprivPath: this.host.setpriv ?? "setpriv",
        unsharePath: this.host.unshare ?? "unshare",
      },
      env: {
        HOME: "/tmp",
        SIDECAR_WORKSPACE: paths.workspace,
        SIDECAR_SOCKET: `${INSIDE.sockets}/sidecar.sock`,
        SIDECAR_AGENT_BOX: `${INSIDE.conf}/box.json`,
      },
    };
  }

  private prepare(
    taskId: string,
    paths: SandboxPaths,
    network: NetworkPolicy,
    mounts: VmMount[],
    made: Partial<PreparedSandbox>,
  ): Promise<PreparedSandbox> {
    if (!this.bubblewrap) return this.prepareUnconfined(paths);
    return prepareSandbox({
      taskId,
      network,
      paths,
      host: this.host,
      uids: this.uids,
      cgroups: this.cgroups,
      limits: this.limits,
      nodePath: this.nodePath,
      mounts,
      made,
    });
  }

  /** Undoes a create that failed part-way, logging why with the sidecar's last words. */
  private async abandon(
    taskId: string,
    dir: string,
    made: Partial<PreparedSandbox>,
    log: ProviderLogger,
    error: unknown,
  ): Promise<void> {
    log.error({ err: error, logTail: await this.logTail(dir) }, "process_vm.create_failed");
    await this.egress.detach(taskId);
    await releaseSandbox(dir, taskId, { uid: made.uid, cgroupDirs: made.cgroups?.dirs }, this.releaseDeps).catch(
      (releaseError) => log.error({ err: releaseError }, "process_vm.release_failed"),
    );
    await removeSandboxDir(dir);
  }

  private async prepareUnconfined(paths: SandboxPaths): Promise<PreparedSandbox> {
    await mkdir(paths.workspace, { recursive: true });
    await mkdir(join(paths.dir, "home"), { recursive: true, mode: 0o700 });
    await mkdir(join(paths.dir, "tmp"), { recursive: true, mode: 0o700 });
    await mkdir(paths.sockets, { recursive: true, mode: 0o700 });
    return { uid: null, cgroups: null, volumeImage: false };
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

  /** Attaches the egress listener of a running sandbox that has none (one an earlier server started). */
  private async serveEgress(record: SandboxRecord): Promise<void> {
    if (!record.bubblewrap || !record.network || this.egress.isAttached(record.taskId)) return;
    const paths = sandboxPaths(this.sandboxDir(record.taskId));
    try {
      await this.egress.attach(record.taskId, paths.egressSocket, record.network);
    } catch (error) {
      this.log.error({ taskId: record.taskId, err: error }, "process_vm.egress_attach_failed");
    }
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
    await this.egress.detach(taskId);
    await releaseSandbox(dir, taskId, { uid: record?.uid, cgroupDirs: record?.cgroups }, this.releaseDeps);
    await removeSandboxDir(dir);
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
    if (record.bubblewrap && pid === record.launcherPid) {
      // Recorded while it started: the launcher. A sandbox init bubblewrap started below it (in a session of its
      // own, so not in the launcher's group) has never served anything: it goes at once, with its namespace.
      for (const init of await liveChildrenWithMarkers(pid, markers)) signalProcess(init, "SIGKILL", false);
    }
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
