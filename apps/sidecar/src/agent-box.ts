/**
 * The agent's sandbox inside the sidecar's: where every command and every
 * git the sidecar runs on the workspace executes.
 *
 * Why a second sandbox: the sidecar holds the per-sandbox token and the
 * sockets to the server. The agent's processes run in a pid namespace of
 * their own ("the box"), under a user namespace nested in the sidecar's, so
 * they cannot see, signal or read the sidecar (no /proc entry of it exists
 * for them), with a stricter seccomp filter (no namespaces, no mounts) and
 * without the sidecar's sockets and configuration mounted. Both map to the
 * same unprivileged host uid, which owns the workspace.
 *
 * The box is one long-lived pid namespace whose init is bubblewrap (it
 * reaps); each command joins it (`bwrap --userns --pidns`), so background
 * processes an agent starts (a dev server) outlive the command that started
 * them, as they do in local mode, and die with the box.
 *
 * Invariants:
 * - The box dies with the sidecar (--die-with-parent), and kill() takes every
 *   agent process with it (its init is pid 1 of their namespace).
 * - ensure() restarts a box that died (an agent may kill its own init).
 * - Git never runs outside the box: a repository's hooks, fsmonitor and
 *   filters are the agent's to write, so they run with the agent's rights.
 */
import { type ChildProcess, spawn } from "node:child_process";
import type { Readable } from "node:stream";
import type { AgentBoxSpec, CommandLauncher, GitLauncher } from "@repo/workspace";
import { z } from "zod";
import type { Logger } from "./logger";

const BoxInfo = z.object({ "child-pid": z.number().int().positive() });
/** Descriptors the join wrapper opens for bubblewrap: the box's namespaces and the seccomp filter. */
const USERNS_FD = 3;
const PIDNS_FD = 4;
const SECCOMP_FD = 5;
const START_TIMEOUT_MS = 10_000;
/**
 * Opens the namespace and filter files as descriptors, then becomes bubblewrap; a shell's
 * redirections are the one portable way to hand a program numbered descriptors.
 */
const JOIN_WRAPPER = `u=$1; p=$2; s=$3; shift 3; exec "$@" ${USERNS_FD}<"$u" ${PIDNS_FD}<"$p" ${SECCOMP_FD}<"$s"`;
/** Makes the agent's processes the first the kernel kills when the sandbox runs out of memory, not the sidecar. */
const COMMAND_WRAPPER = 'echo 1000 > /proc/self/oom_score_adj 2>/dev/null; exec /bin/sh -c "$1"';

interface RunningBox {
  child: ChildProcess;
  /** Pid of the box's init, as the sidecar sees it. */
  pid: number;
  exited: boolean;
}

export class AgentBox {
  private running: RunningBox | null = null;
  private starting: Promise<RunningBox> | null = null;

  constructor(
    private readonly spec: AgentBoxSpec,
    private readonly workspace: string,
    private readonly log: Logger,
  ) {}

  /** Starts the box unless it runs. */
  async ensure(): Promise<void> {
    if (this.running && !this.running.exited) return;
    this.starting ??= this.start().finally(() => {
      this.starting = null;
    });
    this.running = await this.starting;
  }

  /** Ends every process of the agent; the next ensure() starts a fresh box. */
  kill(): void {
    const box = this.running;
    this.running = null;
    if (!box || box.exited) return;
    try {
      process.kill(box.pid, "SIGKILL");
    } catch {
      // already gone
    }
    try {
      box.child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }

  /** Starts shell commands in the box, as the agent. */
  readonly commandLauncher: CommandLauncher = (command, cwd) =>
    this.join(cwd, ["/bin/sh", "-c", COMMAND_WRAPPER, "umbra-command", command]);

  /** Starts git in the box, as the agent. */
  readonly gitLauncher: GitLauncher = (args, cwd) => this.join(cwd, ["git", ...args]);

  private join(cwd: string, program: string[]): { file: string; args: string[] } {
    const box = this.running;
    // A box that died since the last ensure(): the join fails and the command reports it.
    const pid = box && !box.exited ? box.pid : 0;
    const spec = this.spec;
    return {
      file: "/bin/sh",
      args: [
        "-c",
        JOIN_WRAPPER,
        "umbra-join",
        `/proc/${pid}/ns/user`,
        `/proc/${pid}/ns/pid`,
        spec.seccompFile,
        spec.bwrap,
        "--userns",
        String(USERNS_FD),
        "--pidns",
        String(PIDNS_FD),
        "--uid",
        String(spec.uid),
        "--gid",
        String(spec.gid),
        "--seccomp",
        String(SECCOMP_FD),
        ...spec.mounts,
        "--proc",
        "/proc",
        // The sandbox's own minimal /dev (null, zero, random, tty, pts, shm), shared rather than
        // rebuilt: a dozen mounts fewer for every command.
        "--dev-bind",
        "/dev",
        "/dev",
        "--bind",
        "/tmp",
        "/tmp",
        "--bind",
        this.workspace,
        this.workspace,
        "--remount-ro",
        "/",
        "--chdir",
        cwd,
        "--",
        ...program,
      ],
    };
  }

  private async start(): Promise<RunningBox> {
    const spec = this.spec;
    // No --dev here: with it bubblewrap nests a second user namespace, and the box's pid
    // namespace would belong to one that joining commands cannot enter.
    const child = spawn(
      spec.bwrap,
      [
        "--unshare-user",
        "--uid",
        String(spec.uid),
        "--gid",
        String(spec.gid),
        "--unshare-pid",
        "--die-with-parent",
        ...spec.mounts,
        "--proc",
        "/proc",
        "--info-fd",
        "3",
        "--",
        "sleep",
        "infinity",
      ],
      { stdio: ["ignore", "ignore", "pipe", "pipe"], env: { PATH: "/usr/bin:/bin" } },
    );
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-2000);
    });
    const pid = await new Promise<number>((resolve, reject) => {
      let text = "";
      const timer = setTimeout(() => reject(new Error("the agent sandbox did not start in time")), START_TIMEOUT_MS);
      const info = child.stdio[3] as Readable;
      info.on("data", (chunk: Buffer) => {
        text += chunk.toString("utf8");
        try {
          const parsed = BoxInfo.safeParse(JSON.parse(text));
          if (parsed.success) {
            clearTimeout(timer);
            resolve(parsed.data["child-pid"]);
          }
        } catch {
          // not all of it yet
        }
      });
      child.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the agent sandbox exited (code ${code}) while starting: ${stderr.trim()}`));
      });
    });
    const box: RunningBox = { child, pid, exited: false };
    child.removeAllListeners("exit");
    child.once("exit", (code, signal) => {
      box.exited = true;
      this.log.warn({ code, signal }, "agent_box.exited");
    });
    (child.stdio[3] as Readable).destroy();
    this.log.info({ pid }, "agent_box.started");
    return box;
  }
}
