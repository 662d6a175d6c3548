/**
 * The title and description of a task's pull request, written from the task
 * itself: what the agent said last, the list of turns (the user's messages),
 * the files changed, and "Closes #N" for a task created from an issue. When
 * a model is configured, a short summary it writes leads the description;
 * if it fails or takes too long, the description goes without it.
 */
import type { MessageRow, TaskRow } from "@repo/db";
import type { LanguageModel } from "ai";
import { checkLlmModelConfig, type LlmModelConfig } from "../agent/llm-config";

/** GitHub refuses descriptions longer than 65536 characters; GitLab's limit is higher. */
const MAX_BODY = 60_000;
const MAX_FINAL_MESSAGE = 6_000;
const MAX_FILES_LISTED = 50;

export interface PullRequestTextInput {
  task: Pick<TaskRow, "id" | "title" | "branch" | "baseBranch">;
  messages: readonly Pick<MessageRow, "role" | "content" | "sequence">[];
  files: readonly { path: string; additions: number; deletions: number }[];
  closesIssue: number | null;
}

/** Writes a short summary of the change for reviewers; null when it cannot. */
export type Summarizer = (input: PullRequestTextInput) => Promise<string | null>;

export function pullRequestTitle(task: Pick<TaskRow, "title">): string {
  const title = task.title.trim() || "Changes by Umbra";
  return title.length > 240 ? `${title.slice(0, 239)}…` : title;
}

export async function pullRequestBody(input: PullRequestTextInput, summarize?: Summarizer): Promise<string> {
  const summary = summarize ? await summarize(input).catch(() => null) : null;
  const sections: string[] = [];
  if (summary?.trim()) sections.push(summary.trim());

  const final = finalMessage(input.messages);
  if (final) sections.push(`### What the agent said last\n\n${final}`);

  const turns = input.messages
    .filter((message) => message.role === "user")
    .sort((a, b) => a.sequence - b.sequence)
    .map((message, index) => `${index + 1}. ${oneLine(message.content)}`);
  if (turns.length > 0) sections.push(`### Turns\n\n${turns.join("\n")}`);

  if (input.files.length > 0) {
    const listed = input.files
      .slice(0, MAX_FILES_LISTED)
      .map((file) => `- \`${file.path}\` (+${file.additions} −${file.deletions})`);
    if (input.files.length > MAX_FILES_LISTED) listed.push(`- … and ${input.files.length - MAX_FILES_LISTED} more`);
    sections.push(`### Files changed\n\n${listed.join("\n")}`);
  }

  if (input.closesIssue !== null) sections.push(`Closes #${input.closesIssue}`);
  sections.push(`---\nOpened by Umbra from task \`${input.task.id}\` (branch \`${input.task.branch ?? ""}\`).`);
  const body = sections.join("\n\n");
  return body.length > MAX_BODY ? `${body.slice(0, MAX_BODY - 1)}…` : body;
}

/**
 * A Summarizer on the configured model: a few sentences for reviewers, within
 * `timeoutMs`. The settings are checked now; the AI SDK is loaded for the
 * first summary.
 */
export function modelSummarizer(settings: LlmModelConfig, timeoutMs = 30_000): Summarizer {
  checkLlmModelConfig(settings);
  let model: LanguageModel | undefined;
  return async (input) => {
    const [{ streamText }, { createLlmModel }] = await Promise.all([import("ai"), import("../agent/llm-model")]);
    model ??= createLlmModel(settings);
    const prompt = [
      "Write a short description (at most five sentences, plain Markdown, no heading) of this change for the people who review the pull request.",
      `Title: ${input.task.title}`,
      `Requests, in order:\n${input.messages
        .filter((m) => m.role === "user")
        .map((m) => `- ${oneLine(m.content)}`)
        .join("\n")}`,
      `Files changed:\n${input.files.map((f) => `- ${f.path} (+${f.additions} -${f.deletions})`).join("\n") || "- none"}`,
      `The agent's last message:\n${finalMessage(input.messages) ?? "(none)"}`,
    ].join("\n\n");
    const result = streamText({ model, prompt, abortSignal: AbortSignal.timeout(timeoutMs), maxRetries: 0 });
    const text = (await result.text).trim();
    return text || null;
  };
}

/** The agent's last message: its last assistant message, else its last command output as a code block. */
function finalMessage(messages: PullRequestTextInput["messages"]): string | null {
  const ordered = [...messages].sort((a, b) => a.sequence - b.sequence);
  const assistant = ordered.findLast((message) => message.role === "assistant" && message.content.trim());
  if (assistant) return clip(assistant.content.trim());
  const output = ordered.findLast((message) => message.role === "tool" && message.content.trim());
  if (!output) return null;
  const text = output.content.trimEnd();
  const tail = text.length > MAX_FINAL_MESSAGE ? `…${text.slice(-MAX_FINAL_MESSAGE)}` : text;
  const fence = "```".padEnd(Math.max(3, longestBacktickRun(tail) + 1), "`");
  return `${fence}\n${tail}\n${fence}`;
}

function clip(text: string): string {
  return text.length > MAX_FINAL_MESSAGE ? `${text.slice(0, MAX_FINAL_MESSAGE)}…` : text;
}

function oneLine(text: string): string {
  const line = text.trim().split("\n")[0]!.trim();
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}

function longestBacktickRun(text: string): number {
  let longest = 0;
  for (const run of text.match(/`+/g) ?? []) longest = Math.max(longest, run.length);
  return longest;
}
