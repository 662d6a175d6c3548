import type { DiffResponse, MessageDto, TaskDto } from "@repo/types";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRepo } from "../../../test/support/git";
import { scriptedModel, textStep, toolCallStep } from "../../../test/support/scripted-model";
import { EventRecorder, startTestServer, type TestServer } from "../../../test/support/server";
import { LlmAgentRunner } from "../src/agent/llm-agent";

describe("the llm agent through the whole server", () => {
  let t: TestServer;
  const model = scriptedModel([
    toolCallStep("call-1", "write_file", { path: "notes/plan.md", content: "# Plan\n\n- step one\n" }),
    toolCallStep("call-2", "run_command", { command: "ls notes && wc -l notes/plan.md" }),
    textStep("I wrote the plan."),
  ]);

  beforeAll(async () => {
    t = await startTestServer({ agent: new LlmAgentRunner({ model }) });
  });
  afterAll(() => t.close());

  it("writes a file and runs a command; the change shows in the diff and the turn in the messages", async () => {
    const repo = createRepo({ "README.md": "# Demo\n" });
    const { task } = (await t.api<{ task: TaskDto }>("POST", "/api/tasks", { repoUrl: repo, message: "Write a plan" }))
      .body;
    const recorder = new EventRecorder(t.url);
    await recorder.join(task.id);
    await recorder.waitForStatus("COMPLETED");
    recorder.close();

    const diff = (await t.api<DiffResponse>("GET", `/api/tasks/${task.id}/diff`)).body;
    expect(diff.files).toEqual([{ path: "notes/plan.md", additions: 3, deletions: 0 }]);
    expect(diff.patch).toContain("+- step one");

    const { messages } = (await t.api<{ messages: MessageDto[] }>("GET", `/api/tasks/${task.id}/messages`)).body;
    expect(messages.map((m) => [m.role, m.metadata?.toolName ?? m.metadata?.kind ?? null])).toEqual([
      ["user", null],
      ["tool", "write_file"],
      ["tool", "run_command"],
      ["tool", "command-output"],
      ["assistant", "text"],
    ]);
    expect(messages.at(-1)?.content).toBe("I wrote the plan.");
    expect(messages[3]?.content).toContain("3 notes/plan.md");
    expect(messages.map((m) => m.sequence)).toEqual([1, 2, 3, 4, 5]);
  });
});
