import { describe, expect, it } from "vitest";
import { createLogger } from "../src/logger";
import { EgressNotices } from "../src/services/egress-notices";

function recordingNotices() {
  const appended: { taskId: string; role: string; content: string; metadata: unknown }[] = [];
  const notices = new EgressNotices({
    messages: {
      append: async (taskId, role, content, metadata) => {
        appended.push({ taskId, role, content, metadata });
        return {} as never;
      },
    },
    log: createLogger("silent"),
  });
  return { notices, appended };
}

describe("egress notices", () => {
  it("tells the task once per refused host and port, with the reason and the setting that opens it", async () => {
    const { notices, appended } = recordingNotices();
    for (let i = 0; i < 3; i++)
      notices.report({ taskId: "a", host: "evil.example", port: 443, reason: "not in the allowlist" });
    notices.report({ taskId: "a", host: "evil.example", port: 80, reason: "not in the allowlist" });
    notices.report({ taskId: "b", host: "evil.example", port: 443, reason: "network off" });
    await Promise.resolve();
    expect(appended).toEqual([
      {
        taskId: "a",
        role: "system",
        content:
          "Network: blocked a connection to evil.example:443 (not in the allowlist). Allow it with SANDBOX_ALLOWED_DOMAINS on the server, or SANDBOX_NETWORK=on.",
        metadata: { kind: "egress-denied", host: "evil.example", port: 443, reason: "not in the allowlist" },
      },
      expect.objectContaining({ taskId: "a", content: expect.stringContaining("evil.example:80 ") }),
      expect.objectContaining({ taskId: "b", content: expect.stringContaining("(network off)") }),
    ]);
  });

  it("lists at most 20 hosts per task, then says once that more were blocked", () => {
    const { notices, appended } = recordingNotices();
    for (let i = 0; i < 50; i++)
      notices.report({ taskId: "scan", host: `10.0.0.${i}`, port: 22, reason: "internal address" });
    expect(appended).toHaveLength(21);
    expect(appended.at(-2)!.content).toContain("10.0.0.19:22");
    expect(appended.at(-1)!.content).toBe("Network: more outside hosts were blocked; only the first 20 are listed.");
  });
});
