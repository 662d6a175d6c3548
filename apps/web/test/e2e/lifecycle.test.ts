/**
 * The web UI against the real server in real headless Chromium: a task is
 * created from the form, provisions step by step, runs the shell agent, takes
 * a warm follow-up, is archived and re-initialized — all watched through the
 * page, with screenshots of every stage in test-artifacts/e2e/.
 *
 * The server runs as a child process (`node --import tsx apps/server/src/main.ts`)
 * on a free port with its own DATA_DIR, once in remote mode (sandboxed
 * sidecars, a short warm window) and once in local mode, where it is also
 * restarted under the open page.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CHROMIUM = "/usr/bin/chromium";
const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
const ARTIFACTS = join(REPO_ROOT, "test-artifacts", "e2e");
const WARM_WINDOW_MS = 6_000;
const missingBrowser = !existsSync(CHROMIUM);
const skip = missingBrowser && process.env.UMBRA_TEST_REQUIRE_ALL !== "1";

const tmpRoot = mkdtempSync(join(tmpdir(), "umbra-web-e2e-"));

// ---------------------------------------------------------------------------
// Server and repository fixtures

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

interface ServerHandle {
  child: ChildProcess;
  url: string;
  logFile: string;
}

interface ServerOptions {
  name: string;
  port: number;
  dataDir: string;
  env?: Record<string, string>;
}

function logTail(file: string): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-30).join("\n");
  } catch {
    return "(no log)";
  }
}

async function startServer(options: ServerOptions): Promise<ServerHandle> {
  const logFile = join(ARTIFACTS, `server-${options.name}.log`);
  const log = createWriteStream(logFile, { flags: "a" });
  const child = spawn(process.execPath, ["--import", "tsx", "apps/server/src/main.ts"], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      PORT: String(options.port),
      HOST: "127.0.0.1",
      DATA_DIR: options.dataDir,
      AGENT: "shell",
      LOG_LEVEL: "info",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const url = `http://127.0.0.1:${options.port}`;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`the server exited with code ${child.exitCode} before it was healthy:\n${logTail(logFile)}`);
    }
    try {
      const response = await fetch(`${url}/api/health`);
      if (response.ok && ((await response.json()) as { ok?: boolean }).ok === true) return { child, url, logFile };
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  stopServer({ child, url, logFile });
  throw new Error(`the server did not answer GET /api/health within 60 s:\n${logTail(logFile)}`);
}

/** Stops the server child by its PID: SIGTERM, then SIGKILL if it does not exit. */
async function stopServer(server: ServerHandle | undefined): Promise<void> {
  const child = server?.child;
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.kill(child.pid, "SIGTERM");
  const timer = setTimeout(() => {
    if (child.pid && child.exitCode === null) process.kill(child.pid, "SIGKILL");
  }, 10_000);
  await exited;
  clearTimeout(timer);
}

function git(cwd: string, ...args: string[]): void {
  const result = spawnSync("git", args, { cwd, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`git ${args.join(" ")} failed: ${result.stderr}`);
}

function createRepository(name: string): string {
  const dir = join(tmpRoot, name);
  mkdirSync(dir, { recursive: true });
  git(dir, "init", "-q", "-b", "main");
  git(dir, "config", "user.email", "e2e@umbra.test");
  git(dir, "config", "user.name", "Umbra E2E");
  writeFileSync(join(dir, "README.md"), "# Demo\n\nA repository for the browser test.\n");
  git(dir, "add", ".");
  git(dir, "commit", "-q", "-m", "initial commit");
  return dir;
}

// ---------------------------------------------------------------------------
// Browser helpers

/**
 * Records every distinct state of the status line and the stepper as the page
 * renders it, so that short-lived states (a step that takes 50 ms) are seen
 * even when no screenshot or poll lands on them.
 */
function installTimelineRecorder(): void {
  const timeline: string[] = [];
  (window as unknown as { __timeline: string[] }).__timeline = timeline;
  const snapshot = () => {
    const stepper = document.querySelector('[data-testid="init-stepper"]');
    const heading = stepper?.querySelector("h2")?.textContent ?? "";
    const steps = stepper
      ? [...stepper.querySelectorAll<HTMLElement>("li[data-step]")]
          .map((li) => `${li.dataset.step}:${li.dataset.state}`)
          .join(",")
      : "";
    const label = document.querySelector('[data-testid="status-line"] .status-label')?.textContent ?? "";
    const entry = `${label} | ${heading} | ${steps}`;
    if (timeline.at(-1) !== entry) timeline.push(entry);
  };
  new MutationObserver(snapshot).observe(document, {
    subtree: true,
    childList: true,
    characterData: true,
    attributes: true,
  });
}

async function timeline(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { __timeline: string[] }).__timeline.slice());
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/**
 * Waits until the status line reads `label`. Gives up at once when the task
 * failed instead (unless failure is what is awaited), with a screenshot.
 */
async function waitForStatus(page: Page, label: string, timeout = 60_000): Promise<void> {
  const line = page.locator('[data-testid="status-line"]');
  const deadline = Date.now() + timeout;
  let current = "";
  while (Date.now() < deadline) {
    current =
      (await line
        .locator(".status-label")
        .textContent({ timeout: 5_000 })
        .catch(() => null)) ?? "";
    if (current === label) return;
    if (current === "Failed" && label !== "Failed") break;
    await page.waitForTimeout(100);
  }
  const name = `failure-waiting-for-${label.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  await shot(page, name).catch(() => undefined);
  const text = await line.textContent().catch(() => "(no status line)");
  throw new Error(`the status line never read "${label}"; it reads "${text}" (screenshot ${name}.png)`);
}

async function sendFollowUp(page: Page, message: string): Promise<void> {
  const box = page.getByLabel("Follow-up message");
  await box.fill(message);
  await box.press("Control+Enter");
}

async function stepStates(page: Page): Promise<Record<string, string>> {
  return page.evaluate(() =>
    Object.fromEntries(
      [...document.querySelectorAll<HTMLElement>('[data-testid="init-stepper"] li[data-step]')].map((li) => [
        li.dataset.step,
        li.dataset.state,
      ]),
    ),
  );
}

async function fillNewTaskForm(page: Page, baseUrl: string, repo: string, message: string): Promise<void> {
  await page.goto(`${baseUrl}/`);
  await page.getByRole("heading", { name: "New task" }).waitFor();
  await page.getByLabel("Repository").fill(repo);
  await page.getByLabel("Message").fill(message);
}

/** Waits until the page has shown a state matching `pattern` since timeline position `from`. */
async function waitForTimeline(page: Page, from: number, pattern: RegExp, timeout = 60_000): Promise<void> {
  await expect
    .poll(async () => (await timeline(page)).slice(from).some((entry) => pattern.test(entry)), { timeout })
    .toBe(true);
}

// ---------------------------------------------------------------------------

describe.skipIf(skip)("the web UI drives a task through its whole lifecycle in Chromium", () => {
  let context: BrowserContext;

  beforeAll(async () => {
    if (missingBrowser) throw new Error(`${CHROMIUM} is missing and UMBRA_TEST_REQUIRE_ALL=1`);
    mkdirSync(ARTIFACTS, { recursive: true });
    const build = spawnSync("npm", ["run", "build", "-w", "apps/web"], { cwd: REPO_ROOT, encoding: "utf8" });
    if (build.status !== 0) throw new Error(`building the web app failed:\n${build.stdout}\n${build.stderr}`);
    context = await chromium.launchPersistentContext(join(tmpRoot, "profile"), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-gpu",
      ],
      viewport: { width: 1200, height: 900 },
      colorScheme: "light",
    });
    await context.addInitScript(installTimelineRecorder);
  }, 180_000);

  afterAll(async () => {
    await context?.close();
    rmSync(tmpRoot, { recursive: true, force: true });
  });

  describe("remote mode (sandboxed sidecars, a short warm window)", () => {
    let server: ServerHandle | undefined;
    let repo: string;

    beforeAll(async () => {
      repo = createRepository("remote-repo");
      server = await startServer({
        name: "remote",
        port: await freePort(),
        dataDir: join(tmpRoot, "remote-data"),
        env: { AGENT_MODE: "remote", TASK_CLEANUP_DELAY_MS: String(WARM_WINDOW_MS) },
      });
    }, 90_000);

    afterAll(async () => {
      await stopServer(server);
    });

    it("creates, follows up warm, archives, re-initializes and is cleaned up after the warm window", async () => {
      const base = server!.url;
      const page = await context.newPage();
      const problems: string[] = [];
      page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));

      // 1. The form: the client refuses a relative path next to the field.
      await fillNewTaskForm(page, base, "relative/path", "echo hello > hello.txt");
      await page.getByRole("button", { name: "Create task" }).click();
      await expect
        .poll(() => page.locator(".field--repoUrl .field-error").textContent())
        .toMatch(/git URL|absolute path/);
      await shot(page, "remote-01-form-validation");

      // 2. Create the task for real.
      await page.getByLabel("Repository").fill(repo);
      await shot(page, "remote-02-new-task");
      await page.getByRole("button", { name: "Create task" }).click();
      await page.waitForURL(/\/tasks\/[0-9a-f-]{36}$/);
      const taskId = page.url().split("/").at(-1)!;
      await page.getByTestId("init-stepper").waitFor();
      await shot(page, "remote-03-initializing");

      // 3. The stepper walks the remote steps; the agent runs; the task is ready and warm.
      await waitForStatus(page, "Ready for follow-up");
      const firstRun = await timeline(page);
      expect(firstRun.some((entry) => entry.includes("| Initializing workspace |"))).toBe(true);
      expect(firstRun.some((entry) => /CREATE_VM:(current|done)/.test(entry))).toBe(true);
      expect(await stepStates(page)).toEqual({
        CREATE_VM: "done",
        WAIT_VM_READY: "done",
        VERIFY_VM_WORKSPACE: "done",
        INDEX_REPOSITORY: "done",
      });
      const countdown = page.getByTestId("warm-countdown");
      await expect.poll(() => countdown.textContent()).toMatch(/^Workspace kept warm for 0:0[0-6]$/);
      const firstReading = await countdown.textContent();
      await expect.poll(() => countdown.textContent(), { timeout: 3_000 }).not.toBe(firstReading);
      await shot(page, "remote-04-ready-warm");

      // 4. A follow-up inside the warm window runs at once, without provisioning again.
      const beforeFollowUp = (await timeline(page)).length;
      await sendFollowUp(page, "echo more >> hello.txt");
      await waitForTimeline(page, beforeFollowUp, /^Agent working…/);
      await waitForStatus(page, "Ready for follow-up");
      const followUpRun = (await timeline(page)).slice(beforeFollowUp);
      expect(followUpRun.some((entry) => entry.includes("nitializing workspace |"))).toBe(false);
      await expect.poll(() => page.locator(".message--user").count()).toBe(2);

      // 5. The diff shows both lines the agent wrote.
      const diff = page.getByTestId("diff");
      await expect.poll(() => diff.locator(".diff-files").textContent()).toContain("hello.txt");
      await expect
        .poll(() => diff.locator(".diff-line--add").allTextContents())
        .toEqual(expect.arrayContaining(["+hello\n", "+more\n"]));
      await shot(page, "remote-05-follow-up-diff");

      // 6. Archive: the workspace goes, the status line says a message re-creates it.
      await page.getByRole("button", { name: "Archive" }).click();
      await waitForStatus(page, "Workspace archived", 30_000);
      expect(await page.getByTestId("status-line").textContent()).toContain("Sending a message re-creates it");
      expect(await page.getByRole("button", { name: "Archive" }).count()).toBe(0);
      await shot(page, "remote-06-archived");

      // 7. A message re-creates the workspace: "Re-initializing workspace", then ready again.
      const beforeReinit = (await timeline(page)).length;
      await sendFollowUp(page, "echo again >> hello.txt");
      await waitForTimeline(page, beforeReinit, /\| Re-initializing workspace \|/);
      await shot(page, "remote-07-reinitializing");
      await waitForStatus(page, "Ready for follow-up");
      const reinitRun = (await timeline(page)).slice(beforeReinit);
      expect(reinitRun.some((entry) => entry.includes("| Re-initializing workspace |"))).toBe(true);
      expect(reinitRun.some((entry) => entry.includes("| Initializing workspace |"))).toBe(false);
      await expect.poll(() => page.getByTestId("warm-countdown").textContent()).toMatch(/Workspace kept warm for/);
      await expect
        .poll(() => diff.locator(".diff-line--add").allTextContents())
        .toEqual(expect.arrayContaining(["+hello\n", "+more\n", "+again\n"]));
      await shot(page, "remote-08-ready-again");

      // 8. Nobody follows up: the cleanup archives the task, and the open page shows it.
      await waitForStatus(page, "Workspace archived", WARM_WINDOW_MS + 30_000);
      await shot(page, "remote-09-cleaned-up");

      // 9. The list shows the task, archived, and filters by status.
      await page.getByRole("link", { name: "← All tasks" }).click();
      const row = page.locator(`[data-task-id="${taskId}"]`);
      await expect.poll(() => row.locator(".badge").textContent()).toBe("Archived");
      await page.getByLabel("Filter by status").selectOption("RUNNING");
      await expect.poll(() => row.count()).toBe(0);
      await page.getByLabel("Filter by status").selectOption("ARCHIVED");
      await expect.poll(() => row.count()).toBe(1);
      await shot(page, "remote-10-task-list");

      // 10. The same task page in the dark theme.
      await page.emulateMedia({ colorScheme: "dark" });
      await page.goto(`${base}/tasks/${taskId}`);
      await waitForStatus(page, "Workspace archived");
      await page.getByTestId("diff").locator(".diff-line--add").first().waitFor();
      await shot(page, "remote-11-dark-theme");
      await page.emulateMedia({ colorScheme: "light" });

      expect(problems).toEqual([]);
      await page.close();
    }, 240_000);
  });

  describe("local mode", () => {
    let server: ServerHandle | undefined;
    let repo: string;
    let port: number;
    const dataDir = join(tmpRoot, "local-data");

    beforeAll(async () => {
      repo = createRepository("local-repo");
      port = await freePort();
      server = await startServer({ name: "local", port, dataDir, env: { AGENT_MODE: "local" } });
    }, 90_000);

    afterAll(async () => {
      await stopServer(server);
    });

    it("keeps the page live across a server restart without a reload", async () => {
      const page = await context.newPage();
      await fillNewTaskForm(page, server!.url, repo, "echo hello > hello.txt && echo wrote hello");
      await page.getByRole("button", { name: "Create task" }).click();
      await page.waitForURL(/\/tasks\//);
      await waitForStatus(page, "Ready for follow-up");
      expect(await stepStates(page)).toEqual({ PREPARE_WORKSPACE: "done", INDEX_REPOSITORY: "done" });
      expect(await page.getByTestId("warm-countdown").count()).toBe(0);
      await expect.poll(() => page.locator(".command-output").allTextContents()).toContain("wrote hello\n");
      await shot(page, "local-01-ready");

      // The server goes away: the page says so and keeps what it shows.
      await stopServer(server);
      await page.getByTestId("offline-banner").waitFor({ timeout: 15_000 });
      await shot(page, "local-02-server-down");

      // It comes back on the same port and data: the page reconnects and works on.
      server = await startServer({ name: "local", port, dataDir, env: { AGENT_MODE: "local" } });
      await page.getByTestId("offline-banner").waitFor({ state: "detached", timeout: 30_000 });
      await sendFollowUp(page, "echo more >> hello.txt");
      await expect.poll(() => page.locator(".message--user").count(), { timeout: 15_000 }).toBe(2);
      await waitForStatus(page, "Ready for follow-up");
      await expect
        .poll(() => page.getByTestId("diff").locator(".diff-line--add").allTextContents(), { timeout: 15_000 })
        .toEqual(expect.arrayContaining(["+hello\n", "+more\n"]));
      await shot(page, "local-03-after-restart");
      await page.close();
    }, 180_000);
  });

  describe("a server with an API token", () => {
    let server: ServerHandle | undefined;
    const token = "e2e-token-9f3c";

    beforeAll(async () => {
      server = await startServer({
        name: "token",
        port: await freePort(),
        dataDir: join(tmpRoot, "token-data"),
        env: { AGENT_MODE: "local", API_TOKEN: token },
      });
    }, 90_000);

    afterAll(async () => {
      await stopServer(server);
    });

    it("asks for the token once, keeps it, and uses it for the API and the socket", async () => {
      const page = await context.newPage();
      await page.goto(`${server!.url}/`);
      const dialog = page.getByRole("dialog", { name: "API token required" });
      await dialog.waitFor();
      await shot(page, "token-01-prompt");
      await dialog.getByLabel("API token").fill(token);
      await dialog.getByRole("button", { name: "Save token" }).click();
      await dialog.waitFor({ state: "detached" });
      await page.getByText("No tasks yet. Create one above.").waitFor();

      const repo = createRepository("token-repo");
      await page.getByLabel("Repository").fill(repo);
      await page.getByLabel("Message").fill("echo hi > hi.txt");
      await page.getByRole("button", { name: "Create task" }).click();
      await page.waitForURL(/\/tasks\//);
      await waitForStatus(page, "Ready for follow-up");
      // The socket was accepted: no offline notice, and the room answered.
      expect(await page.getByTestId("offline-banner").count()).toBe(0);

      // The token survives a reload.
      await page.reload();
      await waitForStatus(page, "Ready for follow-up");
      expect(await page.getByRole("dialog").count()).toBe(0);
      await shot(page, "token-02-task");
      await page.close();
    }, 120_000);
  });
});
