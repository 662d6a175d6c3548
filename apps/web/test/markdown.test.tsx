// @vitest-environment jsdom
import { cleanup, render } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { isSafeHref, Markdown } from "../src/markdown";

afterEach(cleanup);

function html(text: string): HTMLElement {
  return render(<Markdown text={text} />).container;
}

describe("Markdown", () => {
  it("renders headings, emphasis, code and lists", () => {
    const root = html("# Title\n\nSome **bold**, *em* and `code`.\n\n- one\n- two\n\n1. first\n2. second");
    expect(root.querySelector("h3")?.textContent).toBe("Title");
    expect(root.querySelector("strong")?.textContent).toBe("bold");
    expect(root.querySelector("em")?.textContent).toBe("em");
    expect(root.querySelector("p code")?.textContent).toBe("code");
    expect([...root.querySelectorAll("ul li")].map((li) => li.textContent)).toEqual(["one", "two"]);
    expect([...root.querySelectorAll("ol li")].map((li) => li.textContent)).toEqual(["first", "second"]);
  });

  it("renders fenced code verbatim, also while the fence is still open", () => {
    const root = html("Run:\n\n```sh\necho <b>hi</b>\n");
    expect(root.querySelector("pre code")?.textContent).toBe("echo <b>hi</b>");
    expect(root.querySelector("b")).toBeNull();
  });

  it("never turns message text into markup", () => {
    const root = html('<img src=x onerror="alert(1)"> <script>alert(2)</script>\n\n[x](javascript:alert(3))');
    expect(root.querySelector("img")).toBeNull();
    expect(root.querySelector("script")).toBeNull();
    expect(root.querySelector("a")).toBeNull();
    expect(root.textContent).toContain("<script>alert(2)</script>");
  });

  it("keeps safe links and opens them in a new tab", () => {
    const link = html("See [docs](https://example.com/docs) or https://example.org.").querySelectorAll("a");
    expect([...link].map((a) => a.getAttribute("href"))).toEqual(["https://example.com/docs", "https://example.org"]);
    expect(link[0]?.getAttribute("rel")).toBe("noopener noreferrer");
  });

  it.each([
    ["https://x.y", true],
    ["mailto:a@b.c", true],
    ["/tasks/1", true],
    ["#top", true],
    ["javascript:alert(1)", false],
    ["data:text/html,x", false],
    ["//evil.example", false],
  ])("isSafeHref(%s) is %s", (href, safe) => {
    expect(isSafeHref(href)).toBe(safe);
  });
});

describe("Markdown, GitHub-flavoured", () => {
  it("renders tables, task lists and strike-through", () => {
    const root = html("| a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done\n- [ ] todo\n\n~~gone~~");
    expect([...root.querySelectorAll("th")].map((th) => th.textContent)).toEqual(["a", "b"]);
    expect([...root.querySelectorAll("tbody td")].map((td) => td.textContent)).toEqual(["1", "2"]);
    expect(root.querySelector(".md-table table")).not.toBeNull();
    expect(root.querySelectorAll('input[type="checkbox"]')).toHaveLength(2);
    expect(root.querySelector("del")?.textContent).toBe("gone");
  });

  it("gives a fenced block a copy button and its language", () => {
    const root = html("```ts\nconst a = 1;\n```");
    expect(root.querySelector(".code-lang")?.textContent).toBe("ts");
    expect(root.querySelector(".copy-button")?.textContent).toBe("Copy");
    expect(root.querySelector("pre code")?.textContent).toBe("const a = 1;");
  });

  it("marks heading levels so that a ## heading is styled above body text", () => {
    const root = html("## Summary\n\ntext");
    expect(root.querySelector("h4")?.className).toBe("md-h md-h2");
  });
});
