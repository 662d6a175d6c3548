/**
 * Terminal output with its ANSI colours and styles, as React elements (anser
 * parses the escape sequences; nothing is ever inserted as HTML). The 16
 * standard colours map to classes whose colours follow the theme; 256-colour
 * and true-colour codes keep their exact RGB. Other escape sequences (cursor
 * movement, titles) are dropped rather than shown as garbage.
 */
import Anser from "anser";
import { memo } from "react";

// Cursor and screen controls that anser does not colour: remove them instead of printing them.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching escape sequences is the point
const NON_SGR = /\u001b\[[0-9;?]*[A-HJKSTfhlnsu]|\u001b\][^\u0007\u001b]*(\u0007|\u001b\\)|\u001b[()][AB012]/g;

export function stripAnsi(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching escape sequences is the point
  return text.replace(NON_SGR, "").replace(/\u001b\[[0-9;]*m/g, "");
}

function colourStyle(value: string, property: "color" | "backgroundColor"): Record<string, string> | undefined {
  // anser gives "ansi-…" class names for the 16 colours and "r, g, b" for the others.
  return /^\d+, ?\d+, ?\d+$/.test(value) ? { [property]: `rgb(${value})` } : undefined;
}

export const AnsiText = memo(function AnsiText({ text }: { text: string }) {
  const entries = Anser.ansiToJson(text.replace(NON_SGR, ""), { use_classes: true, remove_empty: true });
  return (
    <>
      {entries.map((entry, index) => {
        if (!entry.fg && !entry.bg && entry.decorations.length === 0) return entry.content;
        const classes = [
          entry.fg && !colourStyle(entry.fg, "color") ? `${entry.fg}-fg` : "",
          entry.bg && !colourStyle(entry.bg, "backgroundColor") ? `${entry.bg}-bg` : "",
          ...entry.decorations.map((d) => `ansi-${d}`),
        ].filter(Boolean);
        return (
          <span
            // biome-ignore lint/suspicious/noArrayIndexKey: the parts of one text never reorder
            key={index}
            className={classes.join(" ") || undefined}
            style={{ ...colourStyle(entry.fg, "color"), ...colourStyle(entry.bg, "backgroundColor") }}
          >
            {entry.content}
          </span>
        );
      })}
    </>
  );
});
