/**
 * Turns checked model settings (llm-config.ts) into an AI SDK language model
 * for the `llm` agent and the pull request summary. This module loads the
 * AI SDK's provider packages; the server imports it only when a model is
 * first used.
 *
 * Invariant: the API key is only ever taken from the config passed in; the
 * provider packages' own environment fallbacks are never relied on, so what
 * was checked is what is used.
 */
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import type { LanguageModel } from "ai";
import { checkLlmModelConfig, type LlmModelConfig, OPENAI_COMPATIBLE_PROVIDER_NAME } from "./llm-config";

export { LLM_PROVIDERS, LlmConfigError, type LlmModelConfig, type LlmProvider } from "./llm-config";

export function createLlmModel(config: LlmModelConfig): LanguageModel {
  const { provider, model, baseURL, apiKey } = checkLlmModelConfig(config);
  switch (provider) {
    case "openai":
      return createOpenAI({ apiKey, baseURL })(model);
    case "anthropic":
      return createAnthropic({ apiKey, baseURL })(model);
    case "openai-compatible":
      return createOpenAICompatible({
        name: OPENAI_COMPATIBLE_PROVIDER_NAME,
        baseURL: baseURL!,
        apiKey,
        includeUsage: true,
      }).chatModel(model);
  }
}
