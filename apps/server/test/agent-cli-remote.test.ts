/**
 * The CLI agents in a remote workspace: the same runners with the sidecar's
 * client as their executor, so the CLI runs in the sidecar's process and its
 * key travels in the exec request's environment. The sidecar runs as a plain
 * process here (`process` provider without bubblewrap): what a sandbox must
 * bind for the CLIs is the integration's part, not this test's.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SidecarClient } from "@repo/workspace";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type CliFixture, createCliFixture, installedCli, processes } from "../../../test/support/agent-cli-fixture";
import { type FakeAnthropic, startFakeAnthropic } from "../../../test/support/fake-anthropic";
import { type FakeResponses, startFakeResponses } from "../../../test/support/fake-openai-responses";
import { ensureSidecarBundle } from "../../sidecar/build";
import { ClaudeCodeAgentRunner } from "../src/agent/claude-code-agent";
import { CodexAgentRunner } from "../src/agent/codex-agent";
import type { AgentRunner } from "../src/agent/types";
import { ProcessVmProvider } from "../src/execution/vm/process/process-provider";
import type { ProviderLogger } from "../src/execution/vm/types";
import { UMBRA_LABELS, UMBRA_MANAGED_BY } from "../src/execution/vm/types";

const KEY = "sk-remote-test-9d3b71c05e";
const claude = installedCli("claude-code").binary;
const codex = installedCli("codex").binary;

const silent: ProviderLogger = { info() {}, warn() {}, error() {}, child: () => silent };

let dataDir: string;
let provider: ProcessVmProvider;
let taskId: string;
let client: SidecarClient;
let workspace: string;
let home: string;
let fixture: CliFixture;
let fake: FakeAnthropic | FakeResponses | undefined;

beforeAll(async () => {
  if (!claude && !codex) return;
  dataDir = await mkdtemp(join(tmpdir(), "umbra-agent-remote-"));
  provider = new ProcessVmProvider({
    dataDir,
    sidecarBundlePath: await ensureSidecarBundle(),
    useBubblewrap: false,
    logger: silent,
  });
  taskId = `task-${randomBytes(6).toString("hex")}`;
  const token = randomBytes(24).toString("hex");
  const handle = await provider.create({
    taskId,
    token,
    labels: { [UMBRA_LABELS.taskId]: taskId, [UMBRA_LABELS.managedBy]: UMBRA_MANAGED_BY },
  });
  client = new SidecarClient({ endpoint: handle.endpoint, token });
  workspace = join(dataDir, "vms", taskId, "workspace");
  home = join(dataDir, "agent-state", taskId, "home");
  await mkdir(home, { recursive: true });
});

afterAll(async () => {
  if (!claude && !codex) return;
  await provider.destroy(taskId);
  await rm(dataDir, { recursive: true, force: true });
});

afterEach(async () => {
  await fake?.close();
  fake = undefined;
  await fixture?.cleanup();
});

/** One turn of `runner` with the sidecar as its executor and a state directory outside the workspace. */
async function remoteTurn(runner: (baseUrl: string) => AgentRunner, baseUrl: string) {
  fixture = await createCliFixture();
  return runner(baseUrl).run({
    ...fixture.turn("Create remote.txt", null),
    executor: client,
    agentState: { home, session: null },
  });
}

const keyInCommandLines = () => processes().filter((p) => p.argv.some((arg) => arg.includes(KEY)));

describe("agent CLIs in a remote workspace, through the sidecar", () => {
  it.skipIf(!claude)(
    "Claude Code writes a file in the sandbox's workspace with the key from the exec environment",
    async () => {
      let leaked: unknown[] = [];
      fake = await startFakeAnthropic({
        apiKey: KEY,
        script: [
          { toolUse: { name: "Write", input: { file_path: join(workspace, "remote.txt"), content: "from claude\n" } } },
          { text: "Written." },
        ],
        beforeReply: () => {
          leaked = keyInCommandLines();
        },
      });
      const result = await remoteTurn(
        (baseUrl) => new ClaudeCodeAgentRunner({ binary: claude!, apiKey: KEY, baseUrl }),
        fake.baseUrl,
      );
      expect(result).toMatchObject({ status: "COMPLETED", session: { id: expect.any(String) } });
      expect(await readFile(join(workspace, "remote.txt"), "utf8")).toBe("from claude\n");
      expect(fixture.events.filter((e) => e.type === "toolCall").map((e) => "toolName" in e && e.toolName)).toEqual([
        "Write",
      ]);
      expect(fixture.text()).toBe("Written.");
      expect(leaked).toEqual([]);
      expect(existsSync(join(workspace, ".claude"))).toBe(false);
      expect(existsSync(join(home, ".claude"))).toBe(true);
    },
  );

  it.skipIf(!codex)(
    "Codex writes a file in the sandbox's workspace with the key from the exec environment",
    async () => {
      let leaked: unknown[] = [];
      fake = await startFakeResponses({
        apiKey: KEY,
        script: [
          {
            customToolCall: {
              name: "apply_patch",
              input: "*** Begin Patch\n*** Add File: remote.txt\n+from codex\n*** End Patch\n",
            },
          },
          { text: "Written." },
        ],
        beforeReply: () => {
          leaked = keyInCommandLines();
        },
      });
      const result = await remoteTurn(
        (baseUrl) => new CodexAgentRunner({ binary: codex!, apiKey: KEY, baseUrl, model: "gpt-5.5" }),
        fake.baseUrl,
      );
      expect(result).toMatchObject({ status: "COMPLETED", session: { id: expect.any(String) } });
      expect(await readFile(join(workspace, "remote.txt"), "utf8")).toBe("from codex\n");
      expect(fixture.events.filter((e) => e.type === "toolCall").map((e) => "toolName" in e && e.toolName)).toEqual([
        "file_change",
      ]);
      expect(fixture.text()).toBe("Written.");
      expect(leaked).toEqual([]);
      expect(existsSync(join(workspace, ".codex"))).toBe(false);
      expect(existsSync(join(home, ".codex", "sessions"))).toBe(true);
    },
  );
});
