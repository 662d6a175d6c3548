/**
 * The `umbra` command against a real server process (local mode, the shell
 * agent), run the way a user runs it: `node apps/cli/bin/umbra.js …` as a
 * child process inside a real git repository, with UMBRA_URL pointing at the
 * server. Exit codes, streamed output and the branch that `checkout` brings
 * in are checked from the outside.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRepo, git, tempDir } from "../../../test/support/git";
import { killAllServers, processesUnder, type ServerProcess, spawnServer } from "../../../test/support/server-process";

const BIN = fileURLToPath(new URL("../bin/umbra.js", import.meta.url));
/** Each test runs the CLI several times, and each run starts node with tsx: seconds apiece on a loaded machine. */
const CLI_TEST_TIMEOUT_MS = 150_000;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function umbra(args: string[], options: { cwd: string; url: string; token?: string }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: process.env.HOME ?? "/tmp",
        UMBRA_URL: options.url,
        ...(options.token ? { UMBRA_TOKEN: options.token } : {}),
        BROWSER: "none",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8");
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8");
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("the umbra CLI against a real server", () => {
  let server: ServerProcess;
  let dataDir: string;

  beforeAll(async () => {
    dataDir = tempDir("umbra-cli-data-");
    // DELIVERY=none: checkout is tested against a repository the server has not pushed the task branch into.
    server = await spawnServer({ dataDir, env: { AGENT_MODE: "local", DELIVERY: "none" }, waitHealthy: false });
    // Start-up (tsx compiling the server, migrations) can take close to two minutes on a loaded machine.
    const deadline = Date.now() + 180_000;
    for (;;) {
      const healthy = await server.api("GET", "/api/health").then(
        (reply) => reply.status === 200,
        () => false,
      );
      if (healthy) break;
      if (server.child.exitCode !== null) throw new Error(`the server exited:\n${server.output().slice(-3000)}`);
      if (Date.now() > deadline)
        throw new Error(`the server was not healthy after 180 s:\n${server.output().slice(-3000)}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }, 200_000);

  afterAll(async () => {
    await server?.stop();
    await killAllServers();
    const leaked = processesUnder(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
    expect(leaked).toEqual([]);
  });

  it(
    "run creates a task for the repository it is in, streams the output and exits 0 when it completes",
    async () => {
      const repo = createRepo({ "README.md": "# Demo\n" });
      const result = await umbra(["run", "echo first line && echo second line && echo done > done.txt"], {
        cwd: join(repo),
        url: server.url,
      });
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/Task [0-9a-f-]{36} · local mode/);
      expect(result.stdout).toContain("first line\nsecond line\n");
      expect(result.stdout).toContain("Completed — ready for follow-up");

      const tasks = (await server.api<{ tasks: { repoUrl: string; status: string }[] }>("GET", "/api/tasks")).body
        .tasks;
      expect(tasks.find((t) => t.repoUrl === repo)?.status).toBe("COMPLETED");
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "run exits non-zero with the reason when the task fails",
    async () => {
      const repo = createRepo();
      const result = await umbra(["run", "echo about to fail && exit 3"], { cwd: repo, url: server.url });
      expect(result.code).toBe(1);
      expect(result.stdout).toContain("about to fail");
      expect(result.stdout).toMatch(/Failed: .*exited with code 3/);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "checkout brings the task branch into the repository and switches to it",
    async () => {
      const repo = createRepo({ "README.md": "# Demo\n" });
      const run = await umbra(
        ["run", "--detach", "mkdir -p docs && echo guide > docs/guide.md && echo more >> README.md"],
        {
          cwd: repo,
          url: server.url,
        },
      );
      expect(run.code).toBe(0);
      const id = /Task ([0-9a-f-]{36})/.exec(run.stdout)![1]!;
      const watched = await umbra(["watch", id.slice(0, 8)], { cwd: repo, url: server.url });
      expect(watched.code).toBe(0);

      const result = await umbra(["checkout", id.slice(0, 8)], { cwd: repo, url: server.url });
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`Switched to umbra/${id}.`);
      expect(git(repo, "rev-parse", "--abbrev-ref", "HEAD")).toBe(`umbra/${id}`);
      expect(readFileSync(join(repo, "docs/guide.md"), "utf8")).toBe("guide\n");
      expect(readFileSync(join(repo, "README.md"), "utf8")).toBe("# Demo\nmore\n");
      expect(git(repo, "rev-list", "--count", `main..umbra/${id}`)).not.toBe("0");
      // Nothing of the temporary worktree is left behind.
      expect(git(repo, "worktree", "list").split("\n")).toHaveLength(1);

      const again = await umbra(["checkout", id], { cwd: repo, url: server.url });
      expect(again.code).toBe(1);
      expect(again.stderr).toContain("already exists here; use --force");
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "say sends a follow-up and follows it; ls lists the task; stop refuses an idle task with the server's reason",
    async () => {
      const repo = createRepo();
      const run = await umbra(["run", "echo one"], { cwd: repo, url: server.url });
      const id = /Task ([0-9a-f-]{36})/.exec(run.stdout)![1]!;

      const said = await umbra(["say", id, "echo two"], { cwd: repo, url: server.url });
      expect(said.code).toBe(0);
      expect(said.stdout).toContain("two\n");
      expect(said.stdout).not.toContain("one\n");

      const listed = await umbra(["ls"], { cwd: repo, url: server.url });
      expect(listed.code).toBe(0);
      expect(listed.stdout).toMatch(new RegExp(`^${id.slice(0, 8)}  completed `, "m"));

      const stopped = await umbra(["stop", id], { cwd: repo, url: server.url });
      expect(stopped.code).toBe(1);
      expect(stopped.stderr).toMatch(/cannot move from COMPLETED to STOPPED/);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "explains usage errors and an unreachable server with exit code 3",
    async () => {
      const repo = createRepo();
      const usage = await umbra(["run"], { cwd: repo, url: server.url });
      expect([usage.code, usage.stderr]).toEqual([3, 'umbra: umbra run needs a message: umbra run "what to do"\n']);
      const nowhere = await umbra(["ls"], { cwd: repo, url: "http://127.0.0.1:9" });
      expect(nowhere.code).toBe(3);
      expect(nowhere.stderr).toContain("cannot reach the Umbra server at http://127.0.0.1:9");
      const outside = tempDir("umbra-not-a-repo-");
      const notRepo = await umbra(["run", "echo hi"], { cwd: outside, url: server.url });
      expect(notRepo.code).toBe(3);
      expect(notRepo.stderr).toContain("is not a git repository");
      expect(existsSync(outside)).toBe(true);
    },
    CLI_TEST_TIMEOUT_MS,
  );
});
