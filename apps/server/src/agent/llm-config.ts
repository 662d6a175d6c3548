/**
 * The server's model settings (LLM_PROVIDER, LLM_MODEL, LLM_BASE_URL and the
 * provider's API key), checked without loading any AI SDK package: the
 * server checks them at start-up and loads the SDK only when a model is
 * first used (llm-model.ts).
 *
 * Invariants:
 * - A missing model name, base URL or API key raises LlmConfigError naming
 *   the environment variable to set, so the server refuses to start instead
 *   of failing every turn later.
 * - `openai-compatible` (Ollama, vLLM, LM Studio, …) needs a base URL and may
 *   run without a key; so may `openai` when a base URL points it at a gateway
 *   that holds the key. `anthropic` always needs its key.
 */

export const LLM_PROVIDERS = ["openai", "anthropic", "openai-compatible"] as const;
export type LlmProvider = (typeof LLM_PROVIDERS)[number];

export interface LlmModelConfig {
  provider: LlmProvider;
  /** Model id as the provider names it, e.g. `gpt-4.1` or `qwen2.5-coder:14b` (LLM_MODEL). */
  model: string;
  /** API root, e.g. `http://127.0.0.1:11434/v1` (LLM_BASE_URL). Required for openai-compatible. */
  baseUrl?: string;
  /** OPENAI_API_KEY or ANTHROPIC_API_KEY; optional for openai-compatible, and for openai with a baseUrl. */
  apiKey?: string;
}

/** The provider name requests to an OpenAI-compatible endpoint are reported under. */
export const OPENAI_COMPATIBLE_PROVIDER_NAME = "umbra-llm";

/** A model setting is missing or malformed. `variable` is the environment variable to fix. */
export class LlmConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
    this.name = "LlmConfigError";
  }
}

const API_KEY_VARIABLE: Record<Exclude<LlmProvider, "openai-compatible">, string> = {
  openai: "OPENAI_API_KEY",
  anthropic: "ANTHROPIC_API_KEY",
};

/** Settings that passed checkLlmModelConfig: what createLlmModel builds a model from. */
export interface CheckedLlmModelConfig {
  provider: LlmProvider;
  model: string;
  baseURL: string | undefined;
  apiKey: string | undefined;
}

export function checkLlmModelConfig(config: LlmModelConfig): CheckedLlmModelConfig {
  if (!(LLM_PROVIDERS as readonly string[]).includes(config.provider)) {
    throw new LlmConfigError(
      "LLM_PROVIDER",
      `LLM_PROVIDER must be one of ${LLM_PROVIDERS.join(", ")} (got ${JSON.stringify(config.provider)})`,
    );
  }
  const model = config.model?.trim();
  if (!model) {
    throw new LlmConfigError("LLM_MODEL", `LLM_MODEL is required for LLM_PROVIDER=${config.provider}`);
  }
  const baseURL = checkBaseUrl(config);
  const apiKey = config.apiKey?.trim() || undefined;
  switch (config.provider) {
    case "openai":
      // Behind a gateway or proxy (LLM_BASE_URL set) the key may be held by the proxy.
      return { provider: "openai", model, baseURL, apiKey: baseURL ? (apiKey ?? "") : requireKey("openai", apiKey) };
    case "anthropic":
      return { provider: "anthropic", model, baseURL, apiKey: requireKey("anthropic", apiKey) };
    case "openai-compatible":
      if (!baseURL) {
        throw new LlmConfigError(
          "LLM_BASE_URL",
          "LLM_BASE_URL is required for LLM_PROVIDER=openai-compatible (e.g. http://127.0.0.1:11434/v1 for Ollama)",
        );
      }
      return { provider: "openai-compatible", model, baseURL, apiKey };
  }
}

function requireKey(provider: keyof typeof API_KEY_VARIABLE, apiKey: string | undefined): string {
  if (apiKey) return apiKey;
  const variable = API_KEY_VARIABLE[provider];
  throw new LlmConfigError(variable, `${variable} is required for LLM_PROVIDER=${provider}`);
}

function checkBaseUrl(config: LlmModelConfig): string | undefined {
  const raw = config.baseUrl?.trim();
  if (!raw) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new LlmConfigError("LLM_BASE_URL", `LLM_BASE_URL is not a valid URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new LlmConfigError("LLM_BASE_URL", `LLM_BASE_URL must be an http(s) URL (got ${JSON.stringify(raw)})`);
  }
  return raw.replace(/\/+$/, "");
}
