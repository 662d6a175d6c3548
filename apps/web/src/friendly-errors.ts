/**
 * Validation messages a person can act on. The API's schemas speak in field
 * names and zod terms ("repoUrl: Too big: expected string to have <=2048
 * characters"); the form shows what to do instead. A message this module
 * does not recognise is shown as the server wrote it, without the field
 * prefix — never hidden.
 */

export type FormField = "repoUrl" | "baseBranch" | "title" | "message" | "agent" | "model";

const RULES: { field: FormField | "*"; test: RegExp; text: (match: RegExpExecArray) => string }[] = [
  { field: "repoUrl", test: /is required|too small/i, text: () => "Enter the repository to work on." },
  {
    field: "repoUrl",
    test: /git URL|absolute path/i,
    text: () => "Enter a git URL (https://…, ssh://…, git@host:…) or the absolute path of a local repository.",
  },
  { field: "repoUrl", test: /cannot fetch|not found|does not exist/i, text: () => "This repository cannot be read." },
  { field: "message", test: /is required|too small/i, text: () => "Write what the agent should do." },
  { field: "baseBranch", test: /does not exist/i, text: () => "This branch does not exist in the repository." },
  {
    field: "baseBranch",
    test: /not a valid branch name|invalid/i,
    text: () => "This is not a valid branch name (no spaces, “..”, “~”, “^”, “:” or a leading “-”).",
  },
  { field: "title", test: /too small/i, text: () => "Leave the title empty or write one." },
  {
    field: "*",
    test: /too big: expected string to have <=\s*(\d+)/i,
    text: (m) => `Keep it under ${Number(m[1]).toLocaleString("en")} characters.`,
  },
  {
    field: "agent",
    test: /unavailable|not available|unknown/i,
    text: () => "This agent is not available on the server.",
  },
];

/** The message without a leading "field: " that the server puts in front. */
function stripField(field: string, message: string): string {
  const prefix = `${field}: `;
  return message.startsWith(prefix) ? message.slice(prefix.length) : message;
}

/** A validation message for `field`, worded for the person filling in the form. */
export function friendlyFieldError(field: FormField, message: string): string {
  const raw = stripField(field, message);
  for (const rule of RULES) {
    if (rule.field !== "*" && rule.field !== field) continue;
    const match = rule.test.exec(raw);
    if (match) {
      // An unknown branch keeps its reason from the server when that names the branch.
      if (field === "baseBranch" && /does not exist/i.test(raw) && /"[^"]+"/.test(raw)) {
        return `${rule.text(match)} (${raw.match(/"[^"]+"/)?.[0]})`;
      }
      return rule.text(match);
    }
  }
  return raw.charAt(0).toUpperCase() + raw.slice(1);
}
