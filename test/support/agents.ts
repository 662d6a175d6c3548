/**
 * What a server with no agent configured says about each agent kind (the
 * availability list of GET /api/config), when its CLIs are pointed at
 * missing files with CLAUDE_CODE_BIN=/nonexistent/claude and
 * CODEX_BIN=/nonexistent/codex.
 */
export const UNCONFIGURED_AGENTS = [
  { kind: "llm", available: false, reason: "no model is configured (set LLM_MODEL)" },
  {
    kind: "claude-code",
    available: false,
    reason:
      "the claude-code CLI is not installed: CLAUDE_CODE_BIN=/nonexistent/claude is missing or not executable; " +
      "no API key is configured (set ANTHROPIC_API_KEY)",
  },
  {
    kind: "codex",
    available: false,
    reason:
      "the codex CLI is not installed: CODEX_BIN=/nonexistent/codex is missing or not executable; " +
      "no API key is configured (set OPENAI_API_KEY)",
  },
  { kind: "command", available: false, reason: "no command is configured (set AGENT_COMMAND)" },
  { kind: "shell", available: true },
];
