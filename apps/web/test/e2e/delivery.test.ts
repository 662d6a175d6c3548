/**
 * Delivery in headless Chromium against the real server and a fake GitHub
 * Enterprise on 127.0.0.1 (its REST API and git smart HTTP): a task created
 * from the form with "draft pull request" pushes its branch and opens the
 * pull request, the task page and the list show it, and a signed "merged"
 * webhook archives the task, which the page shows as merged. Screenshots go
 * to test-artifacts/e2e/.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeGithub, startFakeGithub } from "../../../../test/support/fake-github";
import { createRepo, git } from "../../../../test/support/git";
import { githubPullClosed, postGithub } from "../../../../test/support/webhooks";
import {
  ARTIFACTS,
  buildWebApp,
  CHROMIUM_ARGS,
  fillNewTaskForm,
  freePort,
  type ServerHandle,
  shot,
  startServer,
  stopServer,
} from "./harness";

const CHROMIUM = "/usr/bin/chromium";
const missingBrowser = !existsSync(CHROMIUM);
const skip = missingBrowser && process.env.UMBRA_TEST_REQUIRE_ALL !== "1";
const tmpRoot = mkdtempSync(join(tmpdir(), "umbra-web-delivery-"));
const TOKEN = "ghe-token-for-the-browser-test";
const SECRET = "webhook-secret-for-the-browser-test";

describe.skipIf(skip)("delivery in Chromium", () => {
  let browser: Browser;
  let github: FakeGithub;
  let server: ServerHandle | undefined;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    if (missingBrowser) throw new Error(`${CHROMIUM} is missing and UMBRA_TEST_REQUIRE_ALL=1`);
    mkdirSync(ARTIFACTS, { recursive: true });
    buildWebApp();
    github = await startFakeGithub(TOKEN);
    server = await startServer({
      name: "delivery",
      port: await freePort(),
      dataDir: join(tmpRoot, "data"),
      env: { AGENT_MODE: "local", GITHUB_URL: github.url, GITHUB_TOKEN: TOKEN, GITHUB_WEBHOOK_SECRET: SECRET },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await stopServer(server);
    await github?.close();
    rmSync(tmpRoot, { recursive: true, force: true });
  });

  async function newPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: "light" });
    const page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(`${error.message}\n${error.stack ?? ""}`));
    return page;
  }

  it("opens a draft pull request chosen on the form, shows it on the task and in the list, and shows it merged", async () => {
    const base = server!.url;
    const remote = github.git.addRepo("acme/web", createRepo());
    const page = await newPage();
    await fillNewTaskForm(page, base, github.repoUrl("acme/web"), "echo hello > hello.txt");
    await page.getByLabel("Delivery").selectOption("pull-request");
    await page.getByRole("button", { name: "Create task" }).click();
    await page.waitForURL(/\/tasks\/[0-9a-f-]+$/);
    const taskId = page.url().split("/").at(-1)!;
    const branch = `umbra/${taskId}`;

    const panel = page.getByTestId("delivery");
    const link = panel.getByRole("link", { name: "#1 · draft" });
    await link.waitFor({ timeout: 90_000 });
    expect(await link.getAttribute("href")).toBe(`${github.url}/acme/web/pull/1`);
    const sha = git(remote, "rev-parse", `refs/heads/${branch}`);
    expect(await panel.textContent()).toContain("Pushed");
    expect(await panel.textContent()).toContain(branch);
    expect(await panel.textContent()).toContain(sha.slice(0, 8));
    expect(await panel.getByRole("button", { name: "Create pull request" }).count()).toBe(0);
    expect(github.pulls.map((p) => [p.number, p.head, p.draft])).toEqual([[1, branch, true]]);
    // The header says it too, whichever tab is open.
    await page.getByRole("tab", { name: /Terminal/ }).click();
    expect(await page.getByTestId("delivery-fact").textContent()).toBe("PR #1 · draft");
    await shot(page, "delivery-01-pull-request");

    await page.goto(`${base}/`);
    const badge = page.locator(`[data-task-id="${taskId}"] [data-testid="delivery-badge"]`);
    await badge.waitFor();
    expect(await badge.textContent()).toBe("PR #1 · draft");

    await page.goto(`${base}/tasks/${taskId}`);
    await page.getByTestId("delivery").getByRole("link", { name: "#1 · draft" }).waitFor();
    const merged = await postGithub(
      { url: base },
      "pull_request",
      githubPullClosed(
        { fullName: "acme/web", cloneUrl: github.repoUrl("acme/web") },
        1,
        branch,
        true,
        `${github.url}/acme/web/pull/1`,
      ),
      { secret: SECRET },
    );
    expect(merged).toEqual({ status: 202, body: { status: "accepted" } });
    // The page follows the socket: no reload.
    await page.getByTestId("delivery").getByRole("link", { name: "#1 · merged" }).waitFor({ timeout: 60_000 });
    expect(await page.getByTestId("delivery-fact").textContent()).toBe("PR #1 · merged");
    const status = async () =>
      ((await (await fetch(`${base}/api/tasks/${taskId}`)).json()) as { task: { status: string } }).task.status;
    await expect.poll(status, { timeout: 60_000 }).toBe("ARCHIVED");
    await shot(page, "delivery-02-merged");
    expect(pageErrors).toEqual([]);
  }, 240_000);
});
