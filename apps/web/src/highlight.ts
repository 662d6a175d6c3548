/**
 * Syntax highlighting for code blocks and the file browser, loaded on first
 * use so the highlighter (shiki, with its JavaScript regex engine and the
 * web language bundle, each language fetched when first needed) never
 * weighs on the initial page. Tokens come back as data — text and colours
 * for the light and the dark theme — and are rendered as React elements.
 */

export interface HighlightToken {
  content: string;
  light?: string;
  dark?: string;
  fontStyle?: number;
}

type Highlighter = {
  codeToTokensWithThemes: (
    code: string,
    options: { lang: string; themes: { light: string; dark: string } },
  ) => { content: string; variants?: Record<string, { color?: string; fontStyle?: number }> }[][];
  getLoadedLanguages: () => string[];
  loadLanguage: (lang: never) => Promise<void>;
};

const THEMES = { light: "github-light", dark: "github-dark" } as const;
/** Longest text that is highlighted, in characters; longer text stays plain (highlighting is for reading, not for logs). */
export const HIGHLIGHT_LIMIT = 200_000;

let highlighter: Promise<{ instance: Highlighter; languages: Set<string> }> | null = null;

function load() {
  highlighter ??= (async () => {
    const [{ createHighlighter, bundledLanguages }, { createJavaScriptRegexEngine }] = await Promise.all([
      import("shiki/bundle/web"),
      import("shiki/engine/javascript"),
    ]);
    const instance = (await createHighlighter({
      themes: [THEMES.light, THEMES.dark],
      langs: [],
      engine: createJavaScriptRegexEngine(),
    })) as unknown as Highlighter;
    return { instance, languages: new Set(Object.keys(bundledLanguages)) };
  })();
  return highlighter;
}

const ALIASES: Record<string, string> = {
  sh: "shellscript",
  bash: "shellscript",
  shell: "shellscript",
  zsh: "shellscript",
  console: "shellscript",
  js: "javascript",
  mjs: "javascript",
  cjs: "javascript",
  ts: "typescript",
  mts: "typescript",
  cts: "typescript",
  yml: "yaml",
  md: "markdown",
  py: "python",
  htm: "html",
};

/** The language of a file, from its name (`src/app.ts` → typescript). */
export function languageOfPath(path: string): string {
  const name = path.split("/").at(-1) ?? "";
  if (/^dockerfile$/i.test(name)) return "dockerfile";
  const ext = name.includes(".") ? (name.split(".").at(-1) ?? "") : "";
  return ext.toLowerCase();
}

/** Tokens of `code` in `lang`, or null when the language is unknown or the code too long. */
export async function highlight(code: string, lang: string): Promise<HighlightToken[][] | null> {
  const wanted = ALIASES[lang.toLowerCase()] ?? lang.toLowerCase();
  if (!wanted || code.length > HIGHLIGHT_LIMIT) return null;
  const { instance, languages } = await load();
  if (!languages.has(wanted)) return null;
  if (!instance.getLoadedLanguages().includes(wanted)) await instance.loadLanguage(wanted as never);
  const tokens = instance.codeToTokensWithThemes(code, { lang: wanted, themes: THEMES });
  return tokens.map((line) =>
    line.map((token) => ({
      content: token.content,
      light: token.variants?.light?.color,
      dark: token.variants?.dark?.color,
      fontStyle: token.variants?.light?.fontStyle,
    })),
  );
}
