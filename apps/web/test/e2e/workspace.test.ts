/**
 * The task workspace in headless Chromium against the real server: a
 * 1,000-file change in the virtualized diff viewer, the confirmations before
 * archiving a running task and before deleting, a phone-sized viewport that
 * never scrolls sideways, a keyboard-only create → follow-up → stop, one
 * fetch per resource on load, and — with the llm agent talking to a scripted
 * OpenAI-compatible endpoint on 127.0.0.1 — tool calls as rows, ANSI output
 * and a Markdown table. Screenshots go to test-artifacts/e2e/.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type OpenAiStub, startOpenAiStub } from "../../../../test/support/openai-stub";
import {
  ARTIFACTS,
  buildWebApp,
  CHROMIUM_ARGS,
  createRepository,
  freePort,
  horizontalOverflow,
  installBannerWatch,
  offlineBannerSeen,
  overflowingElements,
  type ServerHandle,
  shot,
  startServer,
  stopServer,
  tabTo,
  waitForStatus,
  waitForTaskIdle,
} from "./harness";

const CHROMIUM = "/usr/bin/chromium";
const missingBrowser = !existsSync(CHROMIUM);
const skip = missingBrowser && process.env.UMBRA_TEST_REQUIRE_ALL !== "1";
const tmpRoot = mkdtempSync(join(tmpdir(), "umbra-web-workspace-"));

async function createTask(base: string, repoUrl: string, message: string): Promise<string> {
  const response = await fetch(`${base}/api/tasks`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ repoUrl, message }),
  });
  if (response.status !== 201) throw new Error(`creating a task failed: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { task: { id: string } }).task.id;
}

async function expectNoSidewaysScroll(page: Page, what: string): Promise<void> {
  const { scrollWidth, innerWidth } = await horizontalOverflow(page);
  if (scrollWidth > innerWidth) {
    throw new Error(
      `${what} scrolls sideways (${scrollWidth} > ${innerWidth}): ${(await overflowingElements(page)).join("; ")}`,
    );
  }
  expect(scrollWidth).toBeLessThanOrEqual(innerWidth);
}

describe.skipIf(skip)("the task workspace in Chromium", () => {
  let browser: Browser;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    if (missingBrowser) throw new Error(`${CHROMIUM} is missing and UMBRA_TEST_REQUIRE_ALL=1`);
    mkdirSync(ARTIFACTS, { recursive: true });
    buildWebApp();
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  }, 180_000);

  afterEach(() => {
    // A page that threw fails its test even when the test failed first on something else.
    expect(pageErrors.splice(0)).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    rmSync(tmpRoot, { recursive: true, force: true });
  });

  async function newPage(width = 1280, height = 900): Promise<Page> {
    const context = await browser.newContext({ viewport: { width, height }, colorScheme: "light" });
    await context.addInitScript(installBannerWatch);
    const page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(`${error.message}\n${error.stack ?? ""}`));
    return page;
  }

  /** Closes the page's context; the page must not have thrown. */
  async function closePage(page: Page): Promise<void> {
    await page.context().close();
    expect(pageErrors.splice(0)).toEqual([]);
  }

  describe("with the shell agent (local mode)", () => {
    let server: ServerHandle | undefined;
    let repo: string;

    beforeAll(async () => {
      repo = createRepository(tmpRoot, "shell-repo");
      server = await startServer({
        name: "workspace-shell",
        port: await freePort(),
        dataDir: join(tmpRoot, "shell-data"),
        env: { AGENT_MODE: "local" },
      });
    }, 200_000);

    afterAll(async () => {
      await stopServer(server);
    });

    it("renders a 1,000-file change and scrolls to its end with a bounded number of elements", async () => {
      const base = server!.url;
      const taskId = await createTask(
        base,
        repo,
        'for i in $(seq 1 1000); do printf "line one of %s\\nline two\\n" "$i" > "file-$i.txt"; done',
      );
      expect((await waitForTaskIdle(base, taskId)).status).toBe("COMPLETED");
      const page = await newPage();
      await page.goto(`${base}/tasks/${taskId}`);
      await waitForStatus(page, "Ready for follow-up");
      await page.locator(".diff-file").first().waitFor();
      expect(await page.locator(".changes-totals").textContent()).toBe("1000 files · +2000 −0");
      const count = () => page.evaluate(() => document.getElementsByTagName("*").length);
      const atTop = await count();
      expect(atTop).toBeLessThan(3_000);
      await shot(page, "workspace-01-thousand-files");

      // Scroll the diff to its end: the last file (in git's path order) is rendered, the first is not.
      const scroller = page.getByTestId("diff-scroll");
      for (let i = 0; i < 6; i++) {
        await scroller.evaluate((el) => el.scrollTo(0, el.scrollHeight));
        await page.waitForTimeout(100);
      }
      await page.locator('.diff-file[data-path="file-999.txt"]').waitFor();
      expect(await page.locator('.diff-file[data-path="file-1.txt"]').count()).toBe(0);
      const atEnd = await count();
      expect(atEnd).toBeLessThan(3_000);
      expect(await page.locator(".diff-file").count()).toBeLessThan(60);
      await shot(page, "workspace-02-thousand-files-end");
      await closePage(page);
    }, 240_000);

    it("asks before archiving a running task and before deleting, and does what was confirmed", async () => {
      const base = server!.url;
      const page = await newPage();
      const taskId = await createTask(base, repo, "echo started && sleep 60");
      await page.goto(`${base}/tasks/${taskId}`);
      await waitForStatus(page, "Agent working…");

      // Archive on a running task asks first; Cancel leaves it running.
      await page.getByRole("button", { name: "Archive", exact: true }).click();
      const archiveDialog = page.getByRole("alertdialog", { name: "Archive a running task?" });
      await archiveDialog.waitFor();
      await shot(page, "workspace-03-archive-confirmation");
      await archiveDialog.getByRole("button", { name: "Cancel" }).click();
      await archiveDialog.waitFor({ state: "detached" });
      expect(await page.locator('[data-testid="status-line"] .status-label').textContent()).toBe("Agent working…");

      await page.getByRole("button", { name: "Archive", exact: true }).click();
      await archiveDialog.getByRole("button", { name: "Stop and archive" }).click();
      await waitForStatus(page, "Workspace archived", 60_000);

      // Delete always asks; Escape cancels, confirming removes the task and goes back to the list.
      await page.getByRole("button", { name: "Delete" }).click();
      const deleteDialog = page.getByRole("alertdialog", { name: "Delete this task?" });
      await deleteDialog.waitFor();
      await page.keyboard.press("Escape");
      await deleteDialog.waitFor({ state: "detached" });
      await page.getByRole("button", { name: "Delete" }).click();
      await shot(page, "workspace-04-delete-confirmation");
      await deleteDialog.getByRole("button", { name: "Delete task" }).click();
      await page.waitForURL(`${base}/`);
      expect((await fetch(`${base}/api/tasks/${taskId}`)).status).toBe(404);
      await expect.poll(() => page.locator(`[data-task-id="${taskId}"]`).count()).toBe(0);
      await closePage(page);
    }, 180_000);

    it("creates, follows up and stops a task with the keyboard alone", async () => {
      const base = server!.url;
      const page = await newPage();
      await page.goto(`${base}/`);
      await page.getByRole("heading", { name: "New task" }).waitFor();
      await page.locator("body").focus();

      await tabTo(page, 'input[name="repoUrl"]');
      await page.keyboard.type(repo);
      await tabTo(page, 'textarea[name="message"]');
      await page.keyboard.type("echo keyboard one");
      await page.keyboard.press("Control+Enter");
      await page.waitForURL(/\/tasks\/[0-9a-f-]{36}$/);
      await waitForStatus(page, "Ready for follow-up");

      await tabTo(page, 'textarea[name="message"]');
      await page.keyboard.type("echo keyboard two && sleep 60");
      await page.keyboard.press("Control+Enter");
      await waitForStatus(page, "Agent working…");
      await shot(page, "workspace-05-keyboard-running");

      await tabTo(page, "button.button--danger", { back: true, limit: 80 });
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Stop");
      await page.keyboard.press("Enter");
      await waitForStatus(page, "Stopped", 60_000);
      expect(await page.getByTestId("status-line").textContent()).toContain("Stopped by request.");
      await expect.poll(() => page.locator(".message--user").count()).toBe(2);
      await shot(page, "workspace-06-keyboard-stopped");
      await closePage(page);
    }, 180_000);

    it("loads a task page with one request per resource and no reconnect notice", async () => {
      const base = server!.url;
      const taskId = await createTask(base, repo, "echo counted > counted.txt");
      await waitForTaskIdle(base, taskId);
      const page = await newPage();
      const requests: string[] = [];
      page.on("request", (request) => {
        const path = new URL(request.url()).pathname;
        if (path.startsWith("/api/")) requests.push(`${request.method()} ${path}`);
      });
      await page.goto(`${base}/tasks/${taskId}`);
      await waitForStatus(page, "Ready for follow-up");
      await page.locator(".diff-file").first().waitFor();
      await page.waitForTimeout(2_000);
      const count = (suffix: string) => requests.filter((r) => r === `GET /api/tasks/${taskId}${suffix}`).length;
      expect([count(""), count("/messages"), count("/diff")]).toEqual([1, 1, 1]);
      expect(await offlineBannerSeen(page)).toBe(false);

      // A follow-up: the diff is fetched once more when the turn ends, not on every event.
      await page.getByLabel("Follow-up message").fill("echo again >> counted.txt");
      await page.getByLabel("Follow-up message").press("Control+Enter");
      await waitForStatus(page, "Agent working…").catch(() => undefined);
      await waitForStatus(page, "Ready for follow-up");
      await expect.poll(() => count("/diff")).toBe(2);
      await page.waitForTimeout(1_500);
      expect(count("/diff")).toBe(2);
      expect(count("/messages")).toBeLessThanOrEqual(3);
      await closePage(page);
    }, 120_000);

    it("never scrolls sideways on a 390 px wide screen: the list, a task and each tab", async () => {
      const base = server!.url;
      const longRepo = createRepository(tmpRoot, `a-repository-with-a-rather-long-name-${"x".repeat(40)}`);
      const taskId = await createTask(
        base,
        longRepo,
        `printf '\\033[31m%s\\033[0m\\n' "${"a-very-long-output-line-".repeat(8)}" && echo "${"wide ".repeat(40)}" > wide.txt`,
      );
      await waitForTaskIdle(base, taskId);
      const page = await newPage(390, 844);
      await page.goto(`${base}/`);
      await page.locator(`[data-task-id="${taskId}"]`).waitFor();
      await expectNoSidewaysScroll(page, "the task list");
      await shot(page, "workspace-07-mobile-list");

      await page.goto(`${base}/tasks/${taskId}`);
      await waitForStatus(page, "Ready for follow-up");
      await page.locator(".diff-file").first().waitFor();
      await expectNoSidewaysScroll(page, "the task page (Changes)");
      await shot(page, "workspace-08-mobile-task");
      for (const tab of ["Files", "Terminal", "Setup"]) {
        await page.getByRole("tab", { name: tab }).click();
        await page.waitForTimeout(300);
        await expectNoSidewaysScroll(page, `the ${tab} tab`);
      }
      await shot(page, "workspace-09-mobile-setup");
      await closePage(page);
    }, 120_000);
  });

  describe("with the llm agent and a scripted model", () => {
    let server: ServerHandle | undefined;
    let stub: OpenAiStub;
    let repo: string;

    beforeAll(async () => {
      repo = createRepository(tmpRoot, "llm-repo");
      stub = await startOpenAiStub([
        {
          toolCalls: [
            { name: "write_file", arguments: { path: "src/hello.ts", content: "export const hello = () => 'hi';\n" } },
          ],
        },
        {
          toolCalls: [
            {
              name: "edit_file",
              arguments: { path: "README.md", search: "# Demo", replace: "# Demo\n\nNow with hello." },
            },
          ],
        },
        { toolCalls: [{ name: "run_command", arguments: { command: "printf '\\033[32mok\\033[0m all good\\n'" } }] },
        {
          text: "## Summary\n\n| file | change |\n|---|---|\n| src/hello.ts | added |\n| README.md | edited |\n\n```ts\nexport const hello = () => 'hi';\n```\n",
        },
      ]);
      server = await startServer({
        name: "workspace-llm",
        port: await freePort(),
        dataDir: join(tmpRoot, "llm-data"),
        env: {
          AGENT: "llm",
          AGENT_MODE: "local",
          LLM_PROVIDER: "openai-compatible",
          LLM_MODEL: "scripted",
          LLM_BASE_URL: stub.baseUrl,
        },
      });
    }, 200_000);

    afterAll(async () => {
      await stopServer(server);
      await stub?.close();
    });

    it("shows tool calls as rows (an edit as a mini diff, a command with its coloured output) and a Markdown table", async () => {
      const base = server!.url;
      const taskId = await createTask(base, repo, "Add a hello module and mention it in the README");
      const page = await newPage();
      await page.goto(`${base}/tasks/${taskId}`);
      await waitForStatus(page, "Ready for follow-up");

      const rows = page.locator(".tool-call");
      await expect.poll(() => rows.count()).toBe(3);
      expect(await rows.locator("summary").allTextContents()).toEqual([
        expect.stringMatching(/^\+Wrote\s*src\/hello\.ts.*done$/),
        expect.stringMatching(/^±Edited\s*README\.md\s*\+3 −1\s*done$/),
        expect.stringMatching(/^›_Ran\s*printf .*done$/),
      ]);
      for (const summary of await rows.locator("summary").all()) await summary.click();
      expect(await rows.nth(1).locator(".mini-diff-line--del").allTextContents()).toEqual(["-# Demo\n"]);
      expect(await rows.nth(1).locator(".mini-diff-line--add").allTextContents()).toEqual([
        "+# Demo\n",
        "+\n",
        "+Now with hello.\n",
      ]);
      expect(await rows.nth(2).locator(".command-output").textContent()).toBe("ok all good\n");
      expect(await rows.nth(2).locator(".ansi-green-fg").textContent()).toBe("ok");
      expect(await rows.nth(2).locator(".exit-code").textContent()).toBe("Exit code 0");

      const table = page.locator(".markdown table");
      expect(await table.locator("th").allTextContents()).toEqual(["file", "change"]);
      expect(await table.locator("tbody tr").count()).toBe(2);
      expect(await page.locator(".markdown .md-h2").textContent()).toBe("Summary");
      await expect.poll(() => page.locator(".markdown .code-block .hl").count()).toBeGreaterThan(0);
      expect(await page.locator(".markdown .copy-button").textContent()).toBe("Copy");

      // No raw JSON and no escape sequences anywhere in the conversation.
      const text = (await page.getByTestId("conversation").textContent()) ?? "";
      expect(text).not.toContain('"content"');
      expect(text).not.toContain("\u001b");
      await shot(page, "workspace-10-tool-rows-and-table");

      // The Terminal tab has the command; the Files tab browses the task branch.
      await page.getByRole("tab", { name: /^Terminal/ }).click();
      expect(await page.getByTestId("terminal").textContent()).toContain("ok all good");
      await page.getByRole("tab", { name: "Files" }).click();
      await page.getByRole("button", { name: /README\.md/ }).click();
      await expect.poll(() => page.locator(".file-lines").textContent()).toContain("Now with hello.");
      await shot(page, "workspace-11-files");
      await closePage(page);
    }, 180_000);
  });
});
