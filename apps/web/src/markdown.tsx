/**
 * Agent text as Markdown (react-markdown with GitHub-flavoured tables, task
 * lists, strike-through and autolinks). Nothing in a message becomes markup:
 * raw HTML is shown as text, and links are kept only for http(s), mailto and
 * same-site targets. Fenced code gets a copy button and lazy-loaded
 * highlighting; tables scroll sideways inside their own box. Headings are
 * shifted two levels down (a message's `#` is an h3 on the page) but styled
 * larger than body text.
 */
import { memo, type ReactNode } from "react";
import ReactMarkdown, { type Components } from "react-markdown";
import remarkGfm from "remark-gfm";
import { CodeBlock } from "./components/code-block";

/** True for link targets that cannot run script: http(s), mailto and same-site paths. */
export function isSafeHref(href: string): boolean {
  return /^(https?:|mailto:)/i.test(href) || (/^[/#]/.test(href) && !href.startsWith("//"));
}

function textOf(node: ReactNode): string {
  if (typeof node === "string" || typeof node === "number") return String(node);
  if (Array.isArray(node)) return node.map(textOf).join("");
  return "";
}

const heading =
  (Tag: "h3" | "h4" | "h5" | "h6", level: number) =>
  ({ children }: { children?: ReactNode }) => <Tag className={`md-h md-h${level}`}>{children}</Tag>;

const COMPONENTS: Components = {
  h1: heading("h3", 1),
  h2: heading("h4", 2),
  h3: heading("h5", 3),
  h4: heading("h6", 4),
  h5: heading("h6", 5),
  h6: heading("h6", 6),
  a: ({ href, children }) =>
    href && isSafeHref(href) ? (
      <a href={href} target="_blank" rel="noopener noreferrer">
        {children}
      </a>
    ) : (
      <span>{children}</span>
    ),
  img: ({ alt }) => <span className="md-image">[image{alt ? `: ${alt}` : ""}]</span>,
  pre: ({ children }) => <>{children}</>,
  code: ({ className, children, node }) => {
    const lang = /language-([\w+#.-]+)/.exec(className ?? "")?.[1] ?? "";
    const text = textOf(children);
    const block = Boolean(lang) || node?.position?.start.line !== node?.position?.end.line || text.endsWith("\n");
    if (!block) return <code>{children}</code>;
    return <CodeBlock code={text.replace(/\n$/, "")} lang={lang} />;
  },
  table: ({ children }) => (
    <div className="md-table">
      <table>{children}</table>
    </div>
  ),
};

type MdNode = { type: string; value?: string; children?: MdNode[] };

/** Raw HTML in a message is text to show, not markup to drop or to run. */
function remarkHtmlAsText() {
  const walk = (node: MdNode, block: boolean) => {
    node.children = node.children?.map((child) => {
      if (child.type !== "html") {
        walk(child, child.type === "blockquote" || child.type === "listItem");
        return child;
      }
      const text = { type: "text", value: child.value ?? "" };
      return block ? { type: "paragraph", children: [text] } : text;
    });
  };
  return (tree: MdNode) => walk(tree, true);
}

const REMARK_PLUGINS = [remarkGfm, remarkHtmlAsText];

export const Markdown = memo(function Markdown({ text }: { text: string }) {
  return (
    <div className="markdown">
      <ReactMarkdown remarkPlugins={REMARK_PLUGINS} components={COMPONENTS}>
        {text}
      </ReactMarkdown>
    </div>
  );
});
