/**
 * INSTALL_DEPENDENCIES: sets a fresh workspace up with its repository's
 * environment — by restoring a cached environment, or by running the setup
 * script and caching what it produced.
 *
 * The script is the environment's `setupScript`, else the repository's own
 * `.umbra/setup.sh`; with neither the step is done at once. It runs in the
 * workspace through its ToolExecutor (in remote mode inside the sandbox) with
 * the environment's variables and secrets (task-environment.ts), and its log
 * streams to the task's room with every secret value replaced.
 *
 * The cache key is the repository, the platform, the script, the plain
 * variables, the names of the secrets and the blob ids of the tracked
 * lockfiles and of the files the script names (workspace-probe.ts). On a hit
 * the archive is unpacked instead of running the script.
 *
 * Invariants:
 * - A failing setup fails the step, naming the exit and the log's tail.
 * - The cache never fails a step: a restore that fails falls back to
 *   running the setup; a store that fails only says so in the log.
 * - Output is redacted before it leaves this module, in the log and in errors.
 * - The cache never holds a secret's value: products that contain one are not cached.
 */
import type { InitStatus } from "@repo/types";
import {
  isWorkspaceArchiver,
  type ToolExecutor,
  type WorkspaceArchiver,
  WorkspaceOperationError,
} from "@repo/workspace";
import { shellQuote } from "../agent/command-agent";
import { errorMessage, WorkspaceError } from "../errors";
import type { StepContext } from "../execution/types";
import { type RedactingStream, SecretRedactor } from "../utils/redaction";
import type { CachedEnvironment, EnvironmentCache } from "./environment-cache";
import type { TaskEnvironment, TaskEnvironments } from "./task-environment";
import {
  capture,
  environmentKey,
  productContaining,
  rootAndLockfiles,
  rootBoundProduct,
  setupProducts,
} from "./workspace-probe";

const STEP: InitStatus = "INSTALL_DEPENDENCIES";
const REPOSITORY_SCRIPT = ".umbra/setup.sh";
const TAIL_CHARS = 2000;

export interface DependencyInstallerDeps {
  environments: TaskEnvironments;
  /** Null when caching is off (ENVIRONMENT_CACHE_MAX_MB=0). */
  cache: EnvironmentCache | null;
  /** What products depend on besides the repository: the mode and the VM provider. */
  platform: string;
  /** Longest a setup may run, ms (SETUP_TIMEOUT_MS). */
  timeoutMs: number;
  /** Hears each setup run and its outcome. */
  onSetup?(outcome: "succeeded" | "failed"): void;
}

interface SetupScript {
  /** Where it came from, for messages. */
  source: string;
  /** The script text (part of the cache key). */
  text: string;
  /** What runs it with `sh -c`. */
  command: string;
}

/** The log of one setup: streamed as it comes (redacted), its tail kept for an error. */
class SetupLog {
  private tail = "";
  private readonly streams: Record<"stdout" | "stderr", RedactingStream>;

  constructor(
    secrets: TaskEnvironment["secrets"],
    private readonly output: (text: string) => void,
  ) {
    const redactor = new SecretRedactor(secrets);
    this.streams = { stdout: redactor.stream(), stderr: redactor.stream() };
  }

  write(stream: "stdout" | "stderr", text: string): void {
    this.emit(this.streams[stream].push(text));
  }

  /** A line of Umbra's own (what the step decided). */
  note(text: string): void {
    this.emit(`Umbra: ${text}\n`);
  }

  end(): void {
    this.emit(this.streams.stdout.end());
    this.emit(this.streams.stderr.end());
  }

  lastLines(): string {
    return this.tail.trimEnd().split("\n").slice(-20).join("\n");
  }

  private emit(text: string): void {
    if (!text) return;
    this.tail = (this.tail + text).slice(-TAIL_CHARS);
    this.output(text);
  }
}

export class DependencyInstaller {
  constructor(private readonly deps: DependencyInstallerDeps) {}

  /** Runs the step for the task of `context` on its workspace's executor. */
  async install(context: StepContext, executor: ToolExecutor): Promise<void> {
    const taskEnv = await this.deps.environments.forRepository(context.task.repoUrl);
    const script = await findScript(taskEnv, executor);
    if (!script) {
      context.log.info("env.setup.none");
      return;
    }
    const cache = taskEnv.environment?.cache === false ? null : this.deps.cache;
    const archiver = cache && isWorkspaceArchiver(executor) ? executor : null;
    const run = new Installation(this.deps, context, executor, taskEnv, script);
    if (!cache || !archiver) {
      await run.runSetup();
      return;
    }
    const cached = await run.prepareCache(cache, archiver);
    if (cached?.restored) return;
    const setupMs = await run.runSetup();
    if (cached) await run.save(cache, archiver, cached.key, cached.root, setupMs);
  }
}

async function findScript(taskEnv: TaskEnvironment, executor: ToolExecutor): Promise<SetupScript | null> {
  const configured = taskEnv.environment?.setupScript;
  if (configured?.trim()) {
    return { source: "the environment's setup script", text: configured, command: `set -e\n${configured}` };
  }
  let text: string;
  try {
    text = await executor.readFile(REPOSITORY_SCRIPT);
  } catch (error) {
    if (error instanceof WorkspaceOperationError && error.code === "NOT_FOUND") return null;
    throw error;
  }
  const path = shellQuote(REPOSITORY_SCRIPT);
  return {
    source: REPOSITORY_SCRIPT,
    text,
    // An executable script picks its interpreter with its #! line; any other runs under `sh -e`.
    command: `if [ -x ${path} ]; then exec ./${REPOSITORY_SCRIPT}; else exec sh -e ${path}; fi`,
  };
}

/** One run of the step on one workspace. */
class Installation {
  private readonly setupLog: SetupLog;

  constructor(
    private readonly deps: DependencyInstallerDeps,
    private readonly context: StepContext,
    private readonly executor: ToolExecutor,
    private readonly taskEnv: TaskEnvironment,
    private readonly script: SetupScript,
  ) {
    this.setupLog = new SetupLog(taskEnv.secrets, context.output);
  }

  /**
   * Computes the cache key and restores the cached environment when there is
   * one. Null when the cache cannot be used on this workspace (said in the log).
   */
  async prepareCache(
    cache: EnvironmentCache,
    archiver: WorkspaceArchiver,
  ): Promise<{ key: string; root: string; restored: boolean } | null> {
    const { script, taskEnv, context } = this;
    try {
      const { root, lockfiles } = await rootAndLockfiles(archiver, script.text);
      context.signal.throwIfAborted();
      const key = environmentKey({
        repoUrl: taskEnv.environment?.repoUrl ?? context.task.repoUrl,
        platform: this.deps.platform,
        script: script.text,
        env: taskEnv.environment?.env ?? {},
        secretNames: taskEnv.secrets.map((s) => s.name),
        lockfiles,
      });
      return { key, root, restored: await this.restore(cache, archiver, key, root) };
    } catch (error) {
      context.signal.throwIfAborted();
      this.setupLog.note(`the environment cache is not usable here (${errorMessage(error)}); running setup.`);
      return null;
    }
  }

  /** Puts the cached environment in place; false when there is none (or it failed to unpack, cleaned away). */
  private async restore(cache: EnvironmentCache, archiver: WorkspaceArchiver, key: string, root: string) {
    const { signal, log } = this.context;
    const entry = await cache.lookup(key, root);
    if (!entry) return false;
    const started = Date.now();
    const how = (await this.adoptStaged(cache, archiver, entry)) ? "moved" : "unpacked";
    try {
      if (how === "unpacked") await archiver.unpackArchive(entry.file);
    } catch (error) {
      signal.throwIfAborted();
      log.warn({ key, err: errorMessage(error) }, "env.cache.restore.failed");
      this.setupLog.note(`restoring the cached environment failed (${errorMessage(error)}); running setup.`);
      await cache.discard(entry.key);
      const paths = entry.paths.filter((p) => !p.startsWith("/") && !p.split("/").includes(".."));
      if (paths.length > 0) {
        await capture(this.executor, `rm -rf -- ${paths.map((p) => shellQuote(p)).join(" ")}`, { signal });
      }
      return false;
    }
    const ms = Date.now() - started;
    if (archiver.adoptTree) void cache.stage(entry);
    log.info({ key, bytes: entry.bytes, ms, how, setupMs: entry.setupMs }, "env.cache.restored");
    this.setupLog.note(
      `restored the environment from the cache (${describeSize(entry.bytes)}: ${describePaths(entry.paths)}) ` +
        `in ${ms} ms (${how === "moved" ? "moved into place, unpacked ahead of time" : "unpacked"}); ` +
        `setup not run (it took ${Math.round(entry.setupMs)} ms).`,
    );
    return true;
  }

  /**
   * Moves a staged tree of `entry` into the workspace when the archiver can
   * (local mode). False when there is none, or it could not be moved here
   * (whatever moved is the archive's own content: unpacking completes it).
   */
  private async adoptStaged(
    cache: EnvironmentCache,
    archiver: WorkspaceArchiver,
    entry: CachedEnvironment,
  ): Promise<boolean> {
    if (!archiver.adoptTree) return false;
    const staged = await cache.takeStaged(entry);
    if (!staged) return false;
    try {
      return await archiver.adoptTree(staged.dir, entry.paths);
    } catch (error) {
      this.context.signal.throwIfAborted();
      this.context.log.warn({ key: entry.key, err: errorMessage(error) }, "env.cache.adopt.failed");
      return false;
    } finally {
      await staged.release();
    }
  }

  /** Runs the setup script; returns how long it took. Throws a WorkspaceError naming the exit and the log's tail. */
  async runSetup(): Promise<number> {
    const { script, setupLog } = this;
    const { signal, log } = this.context;
    setupLog.note(`running ${script.source}.`);
    const started = Date.now();
    const result = await this.executor.runCommand(script.command, {
      signal,
      env: this.taskEnv.setupEnv,
      timeoutMs: this.deps.timeoutMs,
      onOutput: (stream, text) => setupLog.write(stream, text),
    });
    setupLog.end();
    const ms = Date.now() - started;
    signal.throwIfAborted();
    if (result.exitCode === 0) {
      log.info({ ms, source: script.source }, "env.setup.succeeded");
      this.deps.onSetup?.("succeeded");
      return ms;
    }
    this.deps.onSetup?.("failed");
    const how = result.timedOut
      ? `did not finish within ${Math.round(this.deps.timeoutMs / 1000)} s`
      : result.exitCode === null
        ? `was killed (${result.signal ?? "signal"})`
        : `exited with code ${result.exitCode}`;
    log.warn({ ms, source: script.source, exitCode: result.exitCode, timedOut: result.timedOut }, "env.setup.failed");
    const tail = setupLog.lastLines();
    throw new WorkspaceError(`${script.source} ${how}${tail ? `; the end of its log:\n${tail}` : ""}`, STEP, false);
  }

  /** Caches what the setup produced, when restoring it reproduces the setup. Never throws but for a stop. */
  async save(cache: EnvironmentCache, archiver: WorkspaceArchiver, key: string, root: string, setupMs: number) {
    const { executor, setupLog } = this;
    const { task, signal, log } = this.context;
    try {
      const products = await setupProducts(executor, signal);
      if (!products.cacheable) {
        setupLog.note(`not cached: ${products.reason}.`);
        return;
      }
      // A secret written into a product would sit in the cache in the clear: such a setup runs every time.
      const secretValues = this.taskEnv.secrets.map((secret) => secret.value);
      const holdsSecret = await productContaining(executor, secretValues, signal);
      if (holdsSecret) {
        setupLog.note(`not cached: ${holdsSecret} holds the value of a secret.`);
        return;
      }
      const bound = await rootBoundProduct(executor, root, signal);
      const started = Date.now();
      const entry = await cache.store(
        { key, repoUrl: task.repoUrl, paths: products.paths, boundTo: bound ? root : null, setupMs },
        (file, limitBytes) => archiver.packPaths(products.paths, file, { limitBytes }),
      );
      if (!entry) {
        setupLog.note("not cached: larger than the whole environment cache.");
        return;
      }
      log.info({ key, bytes: entry.bytes, ms: Date.now() - started, bound: bound !== null }, "env.cache.stored");
      if (archiver.adoptTree) void cache.stage(entry);
      setupLog.note(
        `cached the environment (${describeSize(entry.bytes)}: ${describePaths(entry.paths)})` +
          (bound ? `; ${bound} names this workspace's path, so only this workspace can reuse it.` : "."),
      );
    } catch (error) {
      signal.throwIfAborted();
      const tooLarge = error instanceof WorkspaceOperationError && error.code === "TOO_LARGE";
      const reason = tooLarge ? "larger than the whole environment cache" : errorMessage(error);
      log.warn({ key, err: reason }, "env.cache.store.failed");
      setupLog.note(`not cached: ${reason}.`);
    }
  }
}

function describeSize(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
  return `${Math.ceil(bytes / 1024)} kB`;
}

function describePaths(paths: readonly string[]): string {
  const shown = paths.slice(0, 3).join(", ");
  return paths.length > 3 ? `${shown} and ${paths.length - 3} more` : shown;
}
