/**
 * A block of code with a copy button and, once the highlighter has loaded,
 * syntax colours for the light and the dark theme. The plain text shows at
 * once and stays the same text after highlighting, so streaming and
 * selection never jump.
 */
import { type CSSProperties, memo, useEffect, useState } from "react";
import { type HighlightToken, highlight } from "../highlight";

export function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [copied, setCopied] = useState<"yes" | "failed" | null>(null);
  useEffect(() => {
    if (!copied) return;
    const timer = setTimeout(() => setCopied(null), 1500);
    return () => clearTimeout(timer);
  }, [copied]);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied("yes");
    } catch {
      setCopied("failed");
    }
  };
  return (
    <button type="button" className="copy-button" onClick={() => void copy()} aria-live="polite">
      {copied === "yes" ? "Copied" : copied === "failed" ? "Copy failed" : label}
    </button>
  );
}

function tokenStyle(token: HighlightToken): CSSProperties | undefined {
  if (!token.light && !token.dark) return undefined;
  return {
    "--hl-light": token.light,
    "--hl-dark": token.dark,
    fontStyle: token.fontStyle && token.fontStyle & 1 ? "italic" : undefined,
  } as CSSProperties;
}

/** Highlighted lines of `code`, or null while loading or when the language is unknown. */
export function useHighlight(code: string, lang: string, enabled = true): HighlightToken[][] | null {
  const [tokens, setTokens] = useState<{ code: string; lines: HighlightToken[][] } | null>(null);
  useEffect(() => {
    if (!enabled || !lang) return;
    let cancelled = false;
    // Wait for streaming text to settle a moment before highlighting it.
    const timer = setTimeout(() => {
      highlight(code, lang).then(
        (lines) => {
          if (!cancelled) setTokens(lines ? { code, lines } : null);
        },
        () => undefined,
      );
    }, 150);
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [code, lang, enabled]);
  return tokens?.code === code ? tokens.lines : null;
}

export const HighlightedLine = memo(function HighlightedLine({ tokens }: { tokens: HighlightToken[] }) {
  return (
    <>
      {tokens.map((token, index) => (
        // biome-ignore lint/suspicious/noArrayIndexKey: a line's tokens never reorder
        <span key={index} className={token.light || token.dark ? "hl" : undefined} style={tokenStyle(token)}>
          {token.content}
        </span>
      ))}
    </>
  );
});

export function CodeBlock({ code, lang }: { code: string; lang: string }) {
  const lines = useHighlight(code, lang);
  return (
    <div className="code-block">
      <div className="code-block-bar">
        <span className="code-lang">{lang || "text"}</span>
        <CopyButton text={code} />
      </div>
      <pre className="md-code" data-lang={lang || undefined}>
        <code>
          {lines
            ? lines.map((line, index) => (
                // biome-ignore lint/suspicious/noArrayIndexKey: lines of one text never reorder
                <span key={index}>
                  {index > 0 && "\n"}
                  <HighlightedLine tokens={line} />
                </span>
              ))
            : code}
        </code>
      </pre>
    </div>
  );
}
