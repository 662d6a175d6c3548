/**
 * Each task's agent state on the server's disk, `DATA_DIR/agent-state/<taskId>`:
 * the HOME of the agent CLIs (their settings and session transcripts), so a
 * follow-up resumes the conversation — in the warm workspace and after a
 * cleanup alike, because the directory outlives every workspace and sandbox
 * of the task.
 *
 * Where the workspace's commands see it: local mode and the `process`
 * provider use it in place (the provider binds it into the sandbox at the
 * same path). A provider that cannot reach this disk (kubernetes) keeps the
 * HOME inside its sandbox and this directory holds its archive
 * (`home.tar.gz`), saved with the work and restored at re-initialization.
 *
 * Invariants:
 * - It lies outside every workspace, so nothing in it is ever committed.
 * - Owner-only (0700), like the root above it: it holds the CLIs' session
 *   transcripts.
 * - Task ids are checked before they become paths; nothing escapes the root.
 * - It is removed with its task, and only then.
 */
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

const TASK_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const ARCHIVE = "home.tar.gz";

export class AgentStateDirs {
  /** @param root `DATA_DIR/agent-state` */
  constructor(readonly root: string) {}

  /** The task's state directory (it may not exist yet). */
  path(taskId: string): string {
    if (!TASK_ID.test(taskId) || taskId.includes("..")) throw new Error(`invalid task id: ${taskId}`);
    return join(this.root, taskId);
  }

  /** Creates the task's state directory (0700) when it is missing; returns its path. */
  async ensure(taskId: string): Promise<string> {
    const dir = this.path(taskId);
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // mkdir's mode is filtered by the umask, and an existing directory keeps its old mode.
    await chmod(dir, 0o700);
    return dir;
  }

  /** Removes the task's state (the task is being deleted). */
  async remove(taskId: string): Promise<void> {
    await rm(this.path(taskId), { recursive: true, force: true });
  }

  /** The archive of a HOME kept inside a sandbox, or null when none was saved. */
  async readArchive(taskId: string): Promise<Buffer | null> {
    try {
      return await readFile(join(this.path(taskId), ARCHIVE));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw error;
    }
  }

  /** Replaces the archive at once (written aside, then renamed): a crash leaves the old one or the new one. */
  async writeArchive(taskId: string, archive: Buffer): Promise<void> {
    const dir = await this.ensure(taskId);
    const partial = join(dir, `${ARCHIVE}.partial`);
    await writeFile(partial, archive, { mode: 0o600 });
    await rename(partial, join(dir, ARCHIVE));
  }
}
