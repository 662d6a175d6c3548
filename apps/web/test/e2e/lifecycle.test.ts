/**
 * The web UI against the real server in real headless Chromium: a task is
 * created from the form, provisions step by step, runs the shell agent, takes
 * a warm follow-up, is archived and re-initialized — all watched through the
 * page, with screenshots of every stage in test-artifacts/e2e/.
 *
 * The server runs as a child process (`node --import tsx apps/server/src/main.ts`)
 * on a free port with its own DATA_DIR: in remote mode (sandboxed sidecars, a
 * short warm window), in local mode (restarted under the open page), and with
 * an API token.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ARTIFACTS,
  addedLines,
  buildWebApp,
  createRepository,
  fillNewTaskForm,
  freePort,
  installBannerWatch,
  installTimelineRecorder,
  offlineBannerSeen,
  type ServerHandle,
  sendFollowUp,
  shot,
  startServer,
  stepStates,
  stopServer,
  timeline,
  waitForStatus,
  waitForTimeline,
} from "./harness";

const CHROMIUM = "/usr/bin/chromium";
const WARM_WINDOW_MS = 6_000;
const missingBrowser = !existsSync(CHROMIUM);
const skip = missingBrowser && process.env.UMBRA_TEST_REQUIRE_ALL !== "1";

const tmpRoot = mkdtempSync(join(tmpdir(), "umbra-web-e2e-"));

describe.skipIf(skip)("the web UI drives a task through its whole lifecycle in Chromium", () => {
  let context: BrowserContext;

  beforeAll(async () => {
    if (missingBrowser) throw new Error(`${CHROMIUM} is missing and UMBRA_TEST_REQUIRE_ALL=1`);
    mkdirSync(ARTIFACTS, { recursive: true });
    buildWebApp();
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
    await context.addInitScript(installBannerWatch);
  }, 180_000);

  afterAll(async () => {
    await context?.close();
    rmSync(tmpRoot, { recursive: true, force: true });
  });

  describe("remote mode (sandboxed sidecars, a short warm window)", () => {
    let server: ServerHandle | undefined;
    let repo: string;

    beforeAll(async () => {
      repo = createRepository(tmpRoot, "remote-repo");
      server = await startServer({
        name: "remote",
        port: await freePort(),
        dataDir: join(tmpRoot, "remote-data"),
        env: { AGENT_MODE: "remote", TASK_CLEANUP_DELAY_MS: String(WARM_WINDOW_MS) },
      });
    }, 200_000);

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
      // The stepper lives in the Setup tab, which stays mounted (hidden once another tab shows).
      await page.getByTestId("init-stepper").waitFor({ state: "attached" });
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

      // The split layout: the conversation beside the workspace tabs, Changes shown once the agent ran.
      const chatPane = (await page.locator(".pane--chat").boundingBox())!;
      const workPane = (await page.locator(".pane--work").boundingBox())!;
      expect(chatPane.x + chatPane.width).toBeLessThanOrEqual(workPane.x);
      expect(Math.abs(chatPane.y - workPane.y)).toBeLessThan(2);
      expect(await page.getByRole("tab", { selected: true }).textContent()).toMatch(/^Changes/);
      expect(await page.getByRole("tablist", { name: "Workspace" }).getByRole("tab").allTextContents()).toEqual([
        expect.stringMatching(/^Changes/),
        "Files",
        expect.stringMatching(/^Terminal/),
        "Setup",
      ]);

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
        .poll(() => addedLines(page), { timeout: 30_000 })
        .toEqual(expect.arrayContaining(["+hello", "+more"]));
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
        .poll(() => addedLines(page), { timeout: 30_000 })
        .toEqual(expect.arrayContaining(["+hello", "+more", "+again"]));
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
      // The diff viewer is loaded on demand: wait for it as long as for any element to appear.
      await expect.poll(() => addedLines(page), { timeout: 30_000 }).toEqual(expect.arrayContaining(["+hello"]));
      await shot(page, "remote-11-dark-theme");
      await page.emulateMedia({ colorScheme: "light" });

      expect(problems).toEqual([]);
      // The reconnect notice never flashed: the socket stayed up the whole time.
      expect(await offlineBannerSeen(page)).toBe(false);
      await page.close();
    }, 240_000);
  });

  describe("local mode", () => {
    let server: ServerHandle | undefined;
    let repo: string;
    let port: number;
    const dataDir = join(tmpRoot, "local-data");

    beforeAll(async () => {
      repo = createRepository(tmpRoot, "local-repo");
      port = await freePort();
      server = await startServer({ name: "local", port, dataDir, env: { AGENT_MODE: "local" } });
    }, 200_000);

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
        .poll(() => addedLines(page), { timeout: 15_000 })
        .toEqual(expect.arrayContaining(["+hello", "+more"]));
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
    }, 200_000);

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

      const repo = createRepository(tmpRoot, "token-repo");
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
