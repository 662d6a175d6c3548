/**
 * The part every agent CLI shares (cli-agent.ts): the message reaching the
 * CLI's standard input intact, and the CLI's output read line by line,
 * redacted and stopped on a fatal event. A small shell script stands in for
 * the CLI; the real CLIs are tested in agent-claude-code / agent-codex.
 */
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type CliFixture, createCliFixture, processesLeftIn } from "../../../test/support/agent-cli-fixture";
import { type CliEventMapping, messageEnvironment, pipeMessageInto, runCli } from "../src/agent/cli-agent";
import { shellQuote } from "../src/agent/command-agent";
import type { AgentOutput, AgentTurnResult } from "../src/agent/types";

let fixture: CliFixture;

beforeEach(async () => {
  fixture = await createCliFixture();
});

afterEach(async () => {
  try {
    expect(await processesLeftIn(fixture.workspace)).toEqual([]);
  } finally {
    await fixture.cleanup();
  }
});

/** Runs `cli` with `message` piped in, returning what it printed. */
async function piped(message: string, cli: string): Promise<string> {
  let out = "";
  const result = await fixture.executor.runCommand(pipeMessageInto(message, cli), {
    env: messageEnvironment(message),
    onOutput: (stream, text) => {
      if (stream === "stdout") out += text;
    },
  });
  expect(result.exitCode).toBe(0);
  return out;
}

/** A mapping that shows each event's `text` and fails fatally on `{"fatal": "..."}`. */
class EchoMapping implements CliEventMapping {
  fatalError: string | null = null;
  constructor(private readonly output: AgentOutput) {}
  event(value: unknown): void {
    const event = value as { text?: string; fatal?: string };
    if (event.text) this.output.text(event.text);
    if (event.fatal) this.fatalError = event.fatal;
  }
  finish(): AgentTurnResult {
    return { status: "COMPLETED" };
  }
}

function run(script: string, secrets = [{ name: "API_KEY", value: "sk-abcdef123456" }]) {
  return runCli(fixture.turn("unused", null), {
    command: script,
    env: {},
    secrets,
    mapping: (output) => new EchoMapping(output),
  });
}

describe("the message on the CLI's standard input", () => {
  it("arrives byte for byte, however long, in any script", async () => {
    const message = `${"ünïcødé 🚀 ".repeat(20_000)}$(rm -rf /) \`id\` "quoted" 'single' \\ %s %n\n-- --help`;
    expect(message.length).toBeGreaterThan(200_000);
    expect(await piped(message, "cat")).toBe(message);
  });

  it("arrives intact for any text (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: "binary", maxLength: 200 }), async (message) => {
        // NUL cannot be in an environment variable; messages are text.
        fc.pre(!message.includes("\0"));
        expect(await piped(message, "cat")).toBe(message);
      }),
      { numRuns: 25 },
    );
  });

  it("is not in the CLI's own environment", async () => {
    const environment = await piped("secret plan", "env");
    expect(environment).not.toContain("UMBRA_AGENT_MESSAGE");
    expect(environment).not.toContain("secret plan");
  });
});

describe("reading the CLI's output", () => {
  it("reads events split across writes and shows lines that are not JSON as output", async () => {
    const script = [
      `printf '{"text":"one"}\\n{"te'`,
      "sleep 0.1",
      `printf 'xt":"two"}\\nnot json\\n{"text":"three"}'`,
    ].join("; ");
    const result = await run(script);
    expect(result).toEqual({ status: "COMPLETED" });
    expect(fixture.events).toEqual([
      { type: "text", text: "one" },
      { type: "text", text: "two" },
      { type: "commandOutput", stream: "stdout", text: "not json\n" },
      { type: "text", text: "three" },
    ]);
  });

  it("redacts a secret split across two events of text", async () => {
    const script = `printf '%s\\n' '{"text":"key: sk-abc"}'; sleep 0.1; printf '%s\\n' '{"text":"def123456."}'`;
    await run(script);
    expect(fixture.text()).toBe("key: [secret:API_KEY].");
  });

  it("stops the CLI at once when the events declare the turn lost, and says why", async () => {
    const started = Date.now();
    const result = await run(`printf '%s\\n' '{"fatal":"refused key sk-abcdef123456"}'; exec sleep 30`);
    expect(result).toEqual({ status: "FAILED", error: "refused key [secret:API_KEY]" });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("stops the CLI and fails the turn when reading an event fails, instead of throwing", async () => {
    const result = await runCli(fixture.turn("unused", null), {
      command: `printf '%s\\n' '{"n":1}'; exec sleep 30`,
      env: {},
      secrets: [],
      mapping: () => ({
        fatalError: null,
        event: () => {
          throw new Error("unexpected shape");
        },
        finish: () => ({ status: "COMPLETED" }),
      }),
    });
    expect(result).toEqual({ status: "FAILED", error: "could not read the agent's events: unexpected shape" });
  });

  it("redacts the secret from a failure", async () => {
    const result = await runCli(fixture.turn("unused", null), {
      command: `echo "bad key sk-abcdef123456" >&2; exit 3`,
      env: {},
      secrets: [{ name: "API_KEY", value: "sk-abcdef123456" }],
      mapping: () => ({
        fatalError: null,
        event: () => {},
        finish: (exit) => ({ status: "FAILED", error: `exit ${exit.exitCode}: ${exit.stderr.trim()}` }),
      }),
    });
    expect(result).toEqual({ status: "FAILED", error: "exit 3: bad key [secret:API_KEY]" });
  });

  it("passes its environment to the CLI only", async () => {
    let out = "";
    await runCli(fixture.turn("unused", null), {
      command: `printf '{"text":"%s"}\\n' "$ONLY_HERE"`,
      env: { ONLY_HERE: "yes" },
      secrets: [],
      mapping: (output) => ({
        fatalError: null,
        event: (value) => {
          out += (value as { text: string }).text;
          output.text("seen");
        },
        finish: () => ({ status: "COMPLETED" }),
      }),
    });
    expect(out).toBe("yes");
    let after = "";
    await fixture.executor.runCommand(`printf '%s' "\${ONLY_HERE:-unset}"`, {
      onOutput: (_, t) => {
        after += t;
      },
    });
    expect(after).toBe("unset");
  });
});

describe("shell quoting of CLI arguments", () => {
  it("keeps any argument one word (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: "binary", maxLength: 60 }), async (arg) => {
        fc.pre(!arg.includes("\0"));
        let out = "";
        await fixture.executor.runCommand(`printf '%s' ${shellQuote(arg)}`, {
          onOutput: (_, t) => {
            out += t;
          },
        });
        expect(out).toBe(arg);
      }),
      { numRuns: 25 },
    );
  });
});
