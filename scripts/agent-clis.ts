/**
 * Prints, as JSON, whether each agent CLI (Claude Code, Codex) is installed
 * and runs here: `{"claude-code": {"ok": true}, "codex": {"ok": false, "reason": "…"}}`.
 * `npm test` uses it to say which CLI tests are left out.
 */
import { type AgentCli, BINARY_VARIABLE, probeAgentCli, resolveAgentCli } from "../apps/server/src/agent/cli-binaries";

const report: Record<string, { ok: boolean; reason?: string }> = {};
for (const cli of ["claude-code", "codex"] as AgentCli[]) {
  const resolved = resolveAgentCli(cli, process.env[BINARY_VARIABLE[cli]]);
  if (!resolved.ok) {
    report[cli] = { ok: false, reason: resolved.reason };
    continue;
  }
  try {
    await probeAgentCli(resolved.binary.path);
    report[cli] = { ok: true };
  } catch (error) {
    report[cli] = { ok: false, reason: (error as Error).message };
  }
}
process.stdout.write(`${JSON.stringify(report)}\n`);
