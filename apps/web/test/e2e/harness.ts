/**
 * Fixtures of the browser end-to-end test: the real server as a child
 * process on a free port, throw-away git repositories, and page helpers that
 * read the UI the way a user does (status line, stepper, follow-up box).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Page } from "playwright-core";
import { expect } from "vitest";

export const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
export const ARTIFACTS = join(REPO_ROOT, "test-artifacts", "e2e");

/**
 * Builds the web app as `npm start` serves it. NODE_ENV is set to production
 * explicitly: the test runner's NODE_ENV=test would otherwise give React's
 * development build (StrictMode double effects, larger bundle).
 */
export function buildWebApp(): void {
  const build = spawnSync("npm", ["run", "build", "-w", "apps/web"], {
    cwd: REPO_ROOT,
    encoding: "utf8",
    env: { ...process.env, NODE_ENV: "production" },
  });
  if (build.status !== 0) throw new Error(`building the web app failed:\n${build.stdout}\n${build.stderr}`);
}

export function freePort(): Promise<number> {
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

export interface ServerHandle {
  child: ChildProcess;
  url: string;
  logFile: string;
}

export interface ServerOptions {
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

export async function startServer(options: ServerOptions): Promise<ServerHandle> {
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
  const deadline = Date.now() + 180_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`the server exited with code ${child.exitCode} before it was healthy:\n${logTail(logFile)}`);
    }
    try {
      const token = options.env?.API_TOKEN;
      const response = await fetch(`${url}/api/health`, {
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
      if (response.ok && ((await response.json()) as { ok?: boolean }).ok === true) return { child, url, logFile };
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  await stopServer({ child, url, logFile });
  throw new Error(`the server did not answer GET /api/health within 180 s:\n${logTail(logFile)}`);
}

/** Stops the server child by its PID: SIGTERM, then SIGKILL if it does not exit. */
export async function stopServer(server: ServerHandle | undefined): Promise<void> {
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

/** A git repository with one commit on `main`, in `parent/name`. */
export function createRepository(parent: string, name: string): string {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  git(dir, "init", "-q", "-b", "main");
  git(dir, "config", "user.email", "e2e@umbra.test");
  git(dir, "config", "user.name", "Umbra E2E");
  writeFileSync(join(dir, "README.md"), "# Demo\n\nA repository for the browser test.\n");
  git(dir, "add", ".");
  git(dir, "commit", "-q", "-m", "initial commit");
  return dir;
}

// Browser helpers

/**
 * Records every distinct state of the status line and the stepper as the page
 * renders it, so that short-lived states (a step that takes 50 ms) are seen
 * even when no screenshot or poll lands on them.
 */
export function installTimelineRecorder(): void {
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

/** Remembers on `window.__offlineBannerSeen` whether the reconnect notice was ever shown on the page. */
export function installBannerWatch(): void {
  const flags = window as unknown as { __offlineBannerSeen: boolean };
  flags.__offlineBannerSeen = false;
  new MutationObserver(() => {
    if (document.querySelector('[data-testid="offline-banner"]')) flags.__offlineBannerSeen = true;
  }).observe(document, { subtree: true, childList: true });
}

export async function offlineBannerSeen(page: Page): Promise<boolean> {
  return page.evaluate(() => (window as unknown as { __offlineBannerSeen: boolean }).__offlineBannerSeen);
}

export async function timeline(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { __timeline: string[] }).__timeline.slice());
}

export async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/**
 * Waits until the status line reads `label`. Gives up at once when the task
 * failed instead (unless failure is what is awaited), with a screenshot.
 */
export async function waitForStatus(page: Page, label: string, timeout = 60_000): Promise<void> {
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

export async function sendFollowUp(page: Page, message: string): Promise<void> {
  const box = page.getByLabel("Follow-up message");
  await box.fill(message);
  await box.press("Control+Enter");
}

export async function stepStates(page: Page): Promise<Record<string, string>> {
  return page.evaluate(() =>
    Object.fromEntries(
      [...document.querySelectorAll<HTMLElement>('[data-testid="init-stepper"] li[data-step]')].map((li) => [
        li.dataset.step,
        li.dataset.state,
      ]),
    ),
  );
}

export async function fillNewTaskForm(page: Page, baseUrl: string, repo: string, message: string): Promise<void> {
  await page.goto(`${baseUrl}/`);
  await page.getByRole("heading", { name: "New task" }).waitFor();
  // The form grows when the server's configuration arrives (agent, model and
  // delivery fields), moving the submit button down: a click aimed at it
  // while that render lands hits the field above it instead.
  await page.waitForFunction(() => !document.querySelector(".app-mode")?.textContent?.includes("connecting"));
  await page.getByLabel("Repository").fill(repo);
  await page.getByLabel("Message").fill(message);
}

/** Waits until the page has shown a state matching `pattern` since timeline position `from`. */
export async function waitForTimeline(page: Page, from: number, pattern: RegExp, timeout = 60_000): Promise<void> {
  await expect
    .poll(async () => (await timeline(page)).slice(from).some((entry) => pattern.test(entry)), { timeout })
    .toBe(true);
}

/**
 * The added lines of the diff viewer on the page, each as "+<text>", in
 * order (the viewer renders a line's operator and its text in separate cells).
 */
export async function addedLines(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll('[data-testid="diff"] .diff-line-content-operator')]
      .filter((operator) => operator.textContent === "+")
      .map((operator) => {
        const cell = operator.closest("td") ?? operator.parentElement;
        const text = (cell?.textContent ?? "").replace(/^\+/, "");
        return `+${text}`;
      }),
  );
}

/** Elements that reach past the right edge of the viewport, for a failure message. */
export async function overflowingElements(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const width = window.innerWidth;
    // Only elements whose overflow is not clipped by a scrolling or hidden-overflow ancestor.
    const clipped = (el: HTMLElement) => {
      for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
        if (getComputedStyle(up).overflowX !== "visible") return true;
      }
      return false;
    };
    return [...document.querySelectorAll<HTMLElement>("body *")]
      .filter((el) => el.getBoundingClientRect().right > width + 0.5 && el.getClientRects().length > 0 && !clipped(el))
      .slice(0, 12)
      .map(
        (el) =>
          `${el.tagName.toLowerCase()}.${[...el.classList].join(".")} → ${Math.round(el.getBoundingClientRect().right)}px`,
      );
  });
}

/** The page scrolls sideways: the document is wider than the viewport. */
export async function horizontalOverflow(page: Page): Promise<{ scrollWidth: number; innerWidth: number }> {
  return page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
}

/** Presses Tab (or Shift+Tab) until the focused element matches `selector`; fails after `limit` presses. */
export async function tabTo(
  page: Page,
  selector: string,
  options: { back?: boolean; limit?: number } = {},
): Promise<void> {
  for (let i = 0; i < (options.limit ?? 40); i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
    await page.keyboard.press(options.back ? "Shift+Tab" : "Tab");
  }
  throw new Error(`keyboard focus never reached ${selector}`);
}

/** Polls the API until the task is no longer INITIALIZING or RUNNING. */
export async function waitForTaskIdle(baseUrl: string, taskId: string, timeout = 90_000): Promise<{ status: string }> {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const { task } = (await (await fetch(`${baseUrl}/api/tasks/${taskId}`)).json()) as { task: { status: string } };
    if (task.status !== "INITIALIZING" && task.status !== "RUNNING") return task;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`task ${taskId} was still busy after ${timeout} ms`);
}

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-gpu",
];
