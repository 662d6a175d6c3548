/**
 * A small Markdown renderer for agent messages that builds React elements
 * directly — never an HTML string — so nothing in a message can inject markup
 * or script. It covers what agents write: headings, paragraphs, fenced code,
 * lists (nested by indentation), block quotes, rules, inline code, emphasis,
 * strike-through and links. Links are kept only for http(s), mailto and
 * same-site targets. Unterminated code fences (a message still streaming) run
 * to the end of the text.
 */
import type { ReactNode } from "react";

type BlockBody =
  | { type: "heading"; level: 1 | 2 | 3 | 4 | 5 | 6; text: string }
  | { type: "code"; lang: string; text: string }
  | { type: "quote"; blocks: Block[] }
  | { type: "list"; ordered: boolean; start: number; items: ListItem[] }
  | { type: "rule" }
  | { type: "paragraph"; text: string };

/**
 * `id` is the block's position in its container. Streaming text only ever
 * grows at the end, so positions are stable identities for React keys.
 */
type Block = BlockBody & { id: number };
type ListItem = { id: number; blocks: Block[] };

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}>\s?/;
const LIST_ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])\s+(.*)$/;

function startsBlock(line: string): boolean {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || LIST_ITEM.test(line);
}

function parseList(lines: string[], from: number): { block: BlockBody; next: number } {
  const first = LIST_ITEM.exec(lines[from]!)!;
  const ordered = /\d/.test(first[2]!);
  const items: string[][] = [];
  let i = from;
  let indent = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    const item = LIST_ITEM.exec(line);
    if (item && /\d/.test(item[2]!) === ordered) {
      indent = item[1]!.length + item[2]!.length + 1;
      items.push([item[3]!]);
      i++;
      continue;
    }
    if (line.trim() === "") {
      // A blank line ends the list unless the list (or the item) continues after it.
      const after = lines[i + 1];
      if (after !== undefined && (/^\s{2,}\S/.test(after) || LIST_ITEM.test(after))) {
        items.at(-1)!.push("");
        i++;
        continue;
      }
      break;
    }
    if (/^\s/.test(line) || !startsBlock(line)) {
      items.at(-1)!.push(line.slice(Math.min(indent, line.length - line.trimStart().length)));
      i++;
      continue;
    }
    break;
  }
  return {
    block: {
      type: "list",
      ordered,
      start: ordered ? Number.parseInt(first[2]!, 10) : 1,
      items: items.map((itemLines, id) => ({ id, blocks: parseBlocks(itemLines.join("\n")) })),
    },
    next: i,
  };
}

function parseBlocks(source: string): Block[] {
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  const blocks: Block[] = [];
  const push = (block: BlockBody) => blocks.push({ ...block, id: blocks.length });
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === "") {
      i++;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      const marker = fence[1]!;
      const body: string[] = [];
      i++;
      while (i < lines.length && !new RegExp(`^ {0,3}${marker[0]}{${marker.length},}\\s*$`).test(lines[i]!)) {
        body.push(lines[i]!);
        i++;
      }
      if (i >= lines.length) {
        // Still open (a message streaming in): drop the trailing blank lines.
        while (body.length > 0 && body.at(-1)!.trim() === "") body.pop();
      }
      i++;
      push({ type: "code", lang: fence[2] ?? "", text: body.join("\n") });
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      push({ type: "heading", level: heading[1]!.length as 1 | 2 | 3 | 4 | 5 | 6, text: heading[2]! });
      i++;
      continue;
    }
    if (RULE.test(line)) {
      push({ type: "rule" });
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const body: string[] = [];
      while (i < lines.length && QUOTE.test(lines[i]!)) {
        body.push(lines[i]!.replace(QUOTE, ""));
        i++;
      }
      push({ type: "quote", blocks: parseBlocks(body.join("\n")) });
      continue;
    }
    if (LIST_ITEM.test(line)) {
      const { block, next } = parseList(lines, i);
      push(block);
      i = next;
      continue;
    }
    const body: string[] = [];
    while (i < lines.length && lines[i]!.trim() !== "" && (body.length === 0 || !startsBlock(lines[i]!))) {
      body.push(lines[i]!.trim());
      i++;
    }
    push({ type: "paragraph", text: body.join("\n") });
  }
  return blocks;
}

const INLINE = new RegExp(
  [
    "(?<tick>`+)(?<code>[\\s\\S]*?[^`])\\k<tick>(?!`)",
    "\\*\\*(?<strong>[^\\s*](?:[\\s\\S]*?[^\\s*])?)\\*\\*",
    "(?<![\\w])__(?<strong2>[^\\s_](?:[\\s\\S]*?[^\\s_])?)__(?![\\w])",
    "~~(?<del>[^\\s~](?:[\\s\\S]*?[^\\s~])?)~~",
    "\\*(?<em>[^\\s*](?:[\\s\\S]*?[^\\s*])?)\\*",
    "(?<![\\w])_(?<em2>[^\\s_](?:[\\s\\S]*?[^\\s_])?)_(?![\\w])",
    '\\[(?<label>[^\\]]+)\\]\\((?<href>[^)\\s]+)(?:\\s+"[^"]*")?\\)',
    "(?<url>https?:\\/\\/[^\\s<>()]+[^\\s<>().,;:!?'\"\\]])",
  ].join("|"),
  "g",
);

/** True for link targets that cannot run script: http(s), mailto and same-site paths. */
export function isSafeHref(href: string): boolean {
  return /^(https?:|mailto:)/i.test(href) || (/^[/#]/.test(href) && !href.startsWith("//"));
}

function renderInline(text: string): ReactNode[] {
  const out: ReactNode[] = [];
  let last = 0;
  let key = 0;
  for (const match of text.matchAll(INLINE)) {
    const at = match.index ?? 0;
    if (at > last) out.push(text.slice(last, at));
    last = at + match[0].length;
    const g = match.groups ?? {};
    if (g.code !== undefined) {
      const code = g.code.length > 2 && g.code.startsWith(" ") && g.code.endsWith(" ") ? g.code.slice(1, -1) : g.code;
      out.push(<code key={key++}>{code}</code>);
    } else if (g.strong !== undefined || g.strong2 !== undefined) {
      out.push(<strong key={key++}>{renderInline(g.strong ?? g.strong2 ?? "")}</strong>);
    } else if (g.del !== undefined) {
      out.push(<del key={key++}>{renderInline(g.del)}</del>);
    } else if (g.em !== undefined || g.em2 !== undefined) {
      out.push(<em key={key++}>{renderInline(g.em ?? g.em2 ?? "")}</em>);
    } else if (g.label !== undefined && g.href !== undefined) {
      out.push(
        isSafeHref(g.href) ? (
          <a key={key++} href={g.href} target="_blank" rel="noopener noreferrer">
            {renderInline(g.label)}
          </a>
        ) : (
          <span key={key++}>{renderInline(g.label)}</span>
        ),
      );
    } else if (g.url !== undefined) {
      out.push(
        <a key={key++} href={g.url} target="_blank" rel="noopener noreferrer">
          {g.url}
        </a>,
      );
    }
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function renderBlocks(blocks: Block[], tight = false): ReactNode[] {
  return blocks.map((block) => {
    const key = block.id;
    switch (block.type) {
      case "heading": {
        const Tag = `h${Math.min(6, block.level + 2)}` as "h3";
        return <Tag key={key}>{renderInline(block.text)}</Tag>;
      }
      case "code":
        return (
          <pre key={key} className="md-code" data-lang={block.lang || undefined}>
            <code>{block.text}</code>
          </pre>
        );
      case "quote":
        return <blockquote key={key}>{renderBlocks(block.blocks)}</blockquote>;
      case "rule":
        return <hr key={key} />;
      case "list": {
        const items = block.items.map((item) => (
          <li key={item.id}>{renderBlocks(item.blocks, item.blocks.length === 1)}</li>
        ));
        return block.ordered ? (
          <ol key={key} start={block.start === 1 ? undefined : block.start}>
            {items}
          </ol>
        ) : (
          <ul key={key}>{items}</ul>
        );
      }
      case "paragraph":
        return tight ? <span key={key}>{renderInline(block.text)}</span> : <p key={key}>{renderInline(block.text)}</p>;
    }
    return null;
  });
}

export function Markdown({ text }: { text: string }) {
  return <div className="markdown">{renderBlocks(parseBlocks(text))}</div>;
}
