// Markdown of answers and user messages, rendered to DOM that cannot run anything.
//
// Contract:
// - Input is untrusted (a model's answer, another user's message). Output is a fragment of
//   plain elements: headings, paragraphs, emphasis, lists, block quotes, tables, rules, code
//   spans and fenced code (inside a box with a Copy button), and links.
// - Raw HTML in the Markdown is never parsed as HTML: markdown-it runs with `html: false`, so
//   `<script>`, `<img onerror>`, `<svg onload>`, `<iframe>` show as the literal text written.
//   HTML inside fences and code spans is text too.
// - Links: only http:, https: and mailto: targets become links (others, e.g. javascript:,
//   data:, vbscript:, file:, relative ones, stay as text); every link gets
//   rel="noopener noreferrer nofollow" and target="_blank".
// - Images are never fetched (no tracking pixels, no requests a model chooses): `![alt](url)`
//   renders as the text "[image: alt]" followed by a link to the url when its scheme is allowed.
// - Belt and braces: the HTML markdown-it produces then goes through DOMPurify with an allow
//   list of the tags above and the attributes href/rel/target/class/title/align/start/type,
//   no `style`, no `on*`, no `src`; a URL DOMPurify or our hook rejects loses its href.
// - Bad input (unclosed fences, half a table while an answer streams) renders as Markdown would
//   at that point; it never throws. Cost is linear in the text (markdown-it's guarantee).
import DOMPurify from "dompurify";
import MarkdownIt from "markdown-it";

const SAFE_URL = /^(https?:|mailto:)/i;

const md = new MarkdownIt({ html: false, linkify: true, typographer: false, breaks: true });
md.validateLink = (url: string) => SAFE_URL.test(url.trim());

md.renderer.rules.image = (tokens, idx) => {
  const token = tokens[idx];
  const alt = md.utils.escapeHtml(String(token.content || "image"));
  const src = String(token.attrGet("src") ?? "");
  const label = `<span class="image-ref">[image: ${alt}]</span>`;
  return SAFE_URL.test(src) ? `${label} <a href="${md.utils.escapeHtml(src)}">${md.utils.escapeHtml(src)}</a>` : label;
};

md.renderer.rules.fence = (tokens, idx) => {
  const token = tokens[idx];
  const lang = token.info.trim().split(/\s+/)[0] ?? "";
  const label = lang ? `<span class="lang">${md.utils.escapeHtml(lang)}</span>` : "";
  return (
    `<div class="code">${label}<button type="button" class="copy">Copy</button>` +
    `<pre><code>${md.utils.escapeHtml(token.content)}</code></pre></div>\n`
  );
};

const ALLOWED_TAGS = [
  "h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "em", "strong", "s", "del", "code",
  "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
  "div", "span", "button",
];
const ALLOWED_ATTR = ["href", "rel", "target", "class", "title", "align", "start", "type"];

const purify = DOMPurify(window);
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    const href = node.getAttribute("href") ?? "";
    if (!SAFE_URL.test(href)) node.removeAttribute("href");
    node.setAttribute("rel", "noopener noreferrer nofollow");
    node.setAttribute("target", "_blank");
  }
});

/** The sanitized DOM of `text` read as Markdown. */
export function markdown(text: string): DocumentFragment {
  const html = md.render(text);
  return purify.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOW_DATA_ATTR: false,
    ALLOWED_URI_REGEXP: SAFE_URL,
    RETURN_DOM_FRAGMENT: true,
  });
}

/** Copies the code of a code box when its Copy button is clicked (one listener on `root`). */
export function copyButtons(root: HTMLElement): void {
  root.addEventListener("click", (event) => {
    const button = (event.target as HTMLElement).closest("button.copy");
    const code = button?.parentElement?.querySelector("pre code");
    if (!button || !code) return;
    const text = code.textContent ?? "";
    navigator.clipboard.writeText(text).then(
      () => (button.textContent = "Copied"),
      () => (button.textContent = "Copy failed: select the text"),
    );
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
}
