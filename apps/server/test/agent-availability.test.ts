/**
 * Which agents can run, where the CLIs' executables are found, and the
 * runner each configuration creates.
 */
import { chmod, mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { installedCli } from "../../../test/support/agent-cli-fixture";
import { UNCONFIGURED_AGENTS } from "../../../test/support/agents";
import { createAgentRunner } from "../src/agent";
import { agentAvailability } from "../src/agent/availability";
import { probeAgentCli, resolveAgentCli } from "../src/agent/cli-binaries";
import { loadConfig } from "../src/config";

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "umbra-agent-bin-"));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An executable script in the temp dir that prints `version` for --version, or fails. */
async function fakeCli(name: string, script: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `#!/bin/sh\n${script}\n`);
  await chmod(path, 0o755);
  return path;
}

const runs = () => Promise.resolve("1.0.0");

describe("agent availability", () => {
  it("lists every kind with why it cannot run, naming the variable to set", async () => {
    const config = loadConfig({ CLAUDE_CODE_BIN: "/nonexistent/claude", CODEX_BIN: "/nonexistent/codex" });
    expect(await agentAvailability(config, { probe: runs })).toEqual(UNCONFIGURED_AGENTS);
  });

  it("offers every kind when each has what it needs", async () => {
    const claude = await fakeCli("claude", "echo 2.0.0");
    const codex = await fakeCli("codex", "echo codex-cli 1.0.0");
    const config = loadConfig({
      LLM_PROVIDER: "openai",
      LLM_MODEL: "gpt-x",
      OPENAI_API_KEY: "sk-o",
      ANTHROPIC_API_KEY: "sk-a",
      CLAUDE_CODE_BIN: claude,
      CODEX_BIN: codex,
      AGENT_COMMAND: "aider --message {message}",
    });
    expect(await agentAvailability(config)).toEqual(
      ["llm", "claude-code", "codex", "command", "shell"].map((kind) => ({ kind, available: true })),
    );
  });

  it("refuses a CLI that is there but does not run, with its error, never the key", async () => {
    const broken = await fakeCli("claude", "echo 'cannot execute: wrong architecture' >&2; exit 126");
    const config = loadConfig({ ANTHROPIC_API_KEY: "sk-ant-secret-value", CLAUDE_CODE_BIN: broken });
    const [, claude] = await agentAvailability(config);
    expect(claude).toEqual({
      kind: "claude-code",
      available: false,
      reason: `the claude-code CLI does not run (CLAUDE_CODE_BIN): ${broken} --version failed: cannot execute: wrong architecture`,
    });
  });
});

describe("the CLIs' executables", () => {
  it("takes CLAUDE_CODE_BIN / CODEX_BIN, by path or by name on PATH", async () => {
    const path = await fakeCli("my-claude", "echo 1");
    expect(resolveAgentCli("claude-code", path)).toEqual({
      ok: true,
      binary: { path, mountDir: dir, source: "environment" },
    });
    expect(resolveAgentCli("codex", "sh")).toMatchObject({
      ok: true,
      binary: { path: expect.stringMatching(/\/sh$/) },
    });
    expect(resolveAgentCli("codex", "no-such-codex-anywhere")).toEqual({
      ok: false,
      reason: "CODEX_BIN=no-such-codex-anywhere is not on PATH",
    });
  });

  it("refuses a directory or a file that is not executable", async () => {
    const file = join(dir, "plain");
    await writeFile(file, "x");
    expect(resolveAgentCli("claude-code", file)).toMatchObject({ ok: false });
    expect(resolveAgentCli("claude-code", dir)).toMatchObject({ ok: false });
  });

  it("has no package for a platform the CLIs are not published for", () => {
    expect(resolveAgentCli("codex", undefined, { os: "freebsd", arch: "x64", musl: false })).toEqual({
      ok: false,
      reason: "no codex package is published for freebsd-x64",
    });
  });

  it("names the platform package to install when it is missing", () => {
    // Musl builds of Claude Code are optional dependencies npm leaves out on glibc machines.
    const resolved = resolveAgentCli("claude-code", undefined, { os: "linux", arch: "arm64", musl: true });
    expect(resolved).toEqual({
      ok: false,
      reason:
        "@anthropic-ai/claude-code-linux-arm64-musl is not installed (it is an optional dependency; or set CLAUDE_CODE_BIN)",
    });
  });

  for (const cli of ["claude-code", "codex"] as const) {
    const { binary } = installedCli(cli);
    it.skipIf(!binary)(`finds the installed ${cli} executable, which runs without Node`, async () => {
      const resolved = resolveAgentCli(cli);
      expect(resolved).toMatchObject({ ok: true, binary: { source: "package" } });
      if (!resolved.ok) return;
      expect(resolved.binary.path.startsWith(resolved.binary.mountDir)).toBe(true);
      // A native executable, not a script for an interpreter.
      const file = await open(resolved.binary.path);
      const head = Buffer.alloc(4);
      await file.read(head, 0, 4, 0).finally(() => file.close());
      expect([...head]).toEqual([0x7f, 0x45, 0x4c, 0x46]);
      expect(await probeAgentCli(resolved.binary.path)).toMatch(/\d+\.\d+\.\d+/);
    });
  }
});

describe("the runner for a configuration", () => {
  const config = loadConfig({
    LLM_PROVIDER: "openai",
    LLM_MODEL: "gpt-x",
    OPENAI_API_KEY: "sk-o",
    ANTHROPIC_API_KEY: "sk-a",
    AGENT_COMMAND: "aider --message {message}",
  });

  it("is the server's AGENT unless the task asks for another kind", () => {
    expect(createAgentRunner(config).kind).toBe("llm");
    for (const kind of ["llm", "claude-code", "codex", "command", "shell"] as const) {
      expect(createAgentRunner(config, { kind }).kind).toBe(kind);
    }
  });

  it("passes the task's model to the CLI", () => {
    const claude = createAgentRunner(config, { kind: "claude-code", model: "claude-opus-x" });
    expect((claude as unknown as { command(m: string, r: null): string }).command("hi", null)).toContain(
      "'--model' 'claude-opus-x'",
    );
    const codex = createAgentRunner(config, { kind: "codex", model: "gpt-5.5" });
    expect((codex as unknown as { command(m: string, r: null): string }).command("hi", null)).toContain(
      "'--model' 'gpt-5.5'",
    );
  });

  it("refuses kinds whose configuration is missing", () => {
    const bare = loadConfig({});
    expect(() => createAgentRunner(bare, { kind: "llm" })).toThrow(/LLM_MODEL/);
    expect(() => createAgentRunner(bare, { kind: "command" })).toThrow(/AGENT_COMMAND/);
  });
});
