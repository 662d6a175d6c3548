import { spawnSync } from "node:child_process";
import { getPriority } from "node:os";
import { PassThrough, Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { GitError, git, gitBuffer, gitOutputStream, isValidBranchName, runGit } from "../src/git";
import { initRepo, TEST_GIT_ENV, tempDir } from "./helpers";

describe("the git runner", () => {
  it("reports a non-zero exit with its code and stderr, and throws only from git()", async () => {
    const dir = await tempDir();
    const result = await runGit(["rev-parse", "--verify", "no-such-ref"], { cwd: dir, env: TEST_GIT_ENV });
    expect(result.exitCode).toBe(128);
    expect(result.stderr).toMatch(/not a git repository/);
    const error = await git(["rev-parse", "--verify", "no-such-ref"], { cwd: dir, env: TEST_GIT_ENV }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GitError);
    expect((error as GitError).exitCode).toBe(128);
    expect((error as GitError).reason).toMatch(/^not a git repository/);
  });

  it("never prompts for credentials: a repository that asks for them fails at once", async () => {
    const dir = await tempDir();
    // An http URL on a closed loopback port: git would ask for a password if it got a 401; here it must just fail.
    const result = await runGit(["ls-remote", "http://127.0.0.1:9/none.git"], {
      cwd: dir,
      env: { ...TEST_GIT_ENV, GIT_TERMINAL_PROMPT: "1" },
      timeoutMs: 20_000,
    });
    expect(result.exitCode).not.toBe(0);
    expect(result.timedOut).toBe(false);
  });

  it("kills git at its time limit", async () => {
    const dir = await tempDir();
    const result = await runGit(["-c", "alias.wait=!sleep 30", "wait"], {
      cwd: dir,
      env: TEST_GIT_ENV,
      timeoutMs: 200,
    });
    expect(result.timedOut).toBe(true);
    expect(result.exitCode).toBeNull();
  });

  it("runs git below the caller's CPU priority when asked to, children it starts at once included", async () => {
    const dir = await tempDir();
    // `nice` without arguments prints the niceness it runs at; an alias's shell is git's first
    // child, started before a priority lowered after the start could have reached git.
    const niceness = async (lowPriority: boolean) => {
      const result = await runGit(["-c", "alias.niceness=!nice", "niceness"], {
        cwd: dir,
        env: TEST_GIT_ENV,
        lowPriority,
      });
      expect(result.exitCode).toBe(0);
      return Number(result.stdout.toString().trim());
    };
    expect(await niceness(false)).toBe(getPriority());
    expect(await niceness(true)).toBe(Math.min(19, getPriority() + 10));
  });

  it("kills git when it writes more than the output limit, and streams when asked to", async () => {
    const repo = await tempDir();
    await initRepo(repo, { "big.txt": "x".repeat(200_000) });
    const limited = await gitBuffer(["cat-file", "-p", "HEAD:big.txt"], {
      cwd: repo,
      env: TEST_GIT_ENV,
      maxOutputBytes: 1000,
    }).catch((e: unknown) => e);
    expect(limited).toBeInstanceOf(GitError);
    expect((limited as GitError).outputLimited).toBe(true);

    const sink = new PassThrough();
    let streamed = 0;
    sink.on("data", (chunk: Buffer) => {
      streamed += chunk.length;
    });
    const result = await runGit(["cat-file", "-p", "HEAD:big.txt"], {
      cwd: repo,
      env: TEST_GIT_ENV,
      maxOutputBytes: 1000,
      stdout: sink,
    });
    expect(result.exitCode).toBe(0);
    expect(result.stdout.length).toBe(0);
    expect(streamed).toBe(200_000);
  });

  it("streams a Readable into git, and kills git when that stream fails", async () => {
    const repo = await tempDir();
    await initRepo(repo, { "a.txt": "a\n" });
    const hashed = await git(["hash-object", "--stdin"], {
      cwd: repo,
      env: TEST_GIT_ENV,
      stdin: Readable.from([Buffer.from("hello "), Buffer.from("world\n")]),
    });
    expect(hashed).toBe(
      await git(["hash-object", "--stdin"], { cwd: repo, env: TEST_GIT_ENV, input: "hello world\n" }),
    );

    async function* failing() {
      yield Buffer.from("partial");
      throw new Error("the connection broke");
    }
    const error = await git(["hash-object", "--stdin"], {
      cwd: repo,
      env: TEST_GIT_ENV,
      stdin: Readable.from(failing()),
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitError);
    expect((error as GitError).message).toMatch(/the connection broke/);
  });

  it("gives git's output as a stream that ends on success and fails with the GitError otherwise", async () => {
    const repo = await tempDir();
    await initRepo(repo, { "big.txt": "x".repeat(300_000) });
    let size = 0;
    for await (const chunk of gitOutputStream(["cat-file", "-p", "HEAD:big.txt"], { cwd: repo, env: TEST_GIT_ENV })) {
      size += (chunk as Buffer).length;
    }
    expect(size).toBe(300_000);

    const failing = gitOutputStream(["cat-file", "-p", "HEAD:missing.txt"], { cwd: repo, env: TEST_GIT_ENV });
    const error = await (async () => {
      for await (const _ of failing);
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitError);
    expect((error as GitError).exitCode).toBe(128);
  });

  it("kills git when its signal aborts or its output stream is destroyed", async () => {
    const dir = await tempDir();
    const controller = new AbortController();
    const running = runGit(["-c", "alias.wait=!sleep 30", "wait"], {
      cwd: dir,
      env: TEST_GIT_ENV,
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 100);
    const result = await running;
    expect(result).toMatchObject({ aborted: true, exitCode: null });

    const started = Date.now();
    const stream = gitOutputStream(["-c", "alias.yes=!yes", "yes"], { cwd: dir, env: TEST_GIT_ENV });
    await new Promise((resolve) => stream.once("data", resolve));
    stream.destroy();
    await new Promise((resolve) => stream.once("close", resolve));
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe("isValidBranchName", () => {
  /** git's own answer: check-ref-format on the branch's ref, and `git branch`'s refusal of "-…" and "HEAD". */
  function gitSays(name: string): boolean {
    if (name.startsWith("-") || name === "HEAD") return false;
    return spawnSync("git", ["check-ref-format", `refs/heads/${name}`]).status === 0;
  }

  it("agrees with git on hand-picked names and on random ones", () => {
    const picked = [
      "main",
      "umbra/eb406447-9160-4e07-aaad-bdb69b936d2c",
      "feature/a.b",
      "release-1.2",
      "a@b",
      "v1.0_rc+1",
      "",
      "@",
      "HEAD",
      "-x",
      "/a",
      "a/",
      "a//b",
      "a..b",
      "a.",
      ".a",
      "a/.b",
      "a.lock",
      "a/b.lock/c",
      "a@{1}",
      "a b",
      "a\tb",
      "a~1",
      "a^",
      "a:b",
      "a?",
      "a*",
      "a[b",
      "a\\b",
      "a\u007fb",
      "ü/ñ",
    ];
    const alphabet = [
      "a",
      "b",
      "/",
      ".",
      "-",
      "@",
      "{",
      "~",
      "^",
      ":",
      "?",
      "*",
      "[",
      "\\",
      " ",
      "l",
      "o",
      "c",
      "k",
      "\u0001",
      "é",
    ];
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const generated = Array.from({ length: 400 }, () =>
      Array.from({ length: 1 + Math.floor(random() * 8) }, () => alphabet[Math.floor(random() * alphabet.length)]).join(
        "",
      ),
    );
    const disagreements = [...picked, ...generated].filter((name) => isValidBranchName(name) !== gitSays(name));
    expect(disagreements).toEqual([]);
    expect(isValidBranchName("umbra/eb406447-9160-4e07-aaad-bdb69b936d2c")).toBe(true);
  });
});
