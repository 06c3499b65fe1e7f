// The message list: bubbles rendered as Markdown (markdown.ts), updated without touching what
// did not change.
//
// Contract:
// - `show` may be called per delta; the DOM is updated at most once per animation frame (or
//   FALLBACK_MS when frames are not running, e.g. a hidden tab), with the latest bubbles.
// - A bubble whose data did not change keeps its DOM nodes untouched (same nodes, no mutation):
//   a finished message is rendered once. A streaming answer whose text grew gets only its text
//   box re-rendered; any other change (ended, error, rating, versions) rebuilds that one bubble.
// - Nodes are reordered only where the order changed; bubbles no longer shown are removed.
// - Every text goes through markdown() (nothing a model or a user wrote runs); the rest is
//   built with textContent.
import type { Bubble } from "./thread";
import { markdown } from "./markdown";
import { Follow } from "./scroll";

const FALLBACK_MS = 100;

/** What a bubble shows besides its text (files, tool buttons), built by the page. */
export type Extras = (b: Bubble) => HTMLElement[];

type Shown = { li: HTMLLIElement; shape: string; text: string; body: HTMLElement };

export class MessageList {
  private shown = new Map<string, Shown>();
  private latest: Bubble[] | null = null;
  private frame = 0;
  private timer = 0;
  readonly follow: Follow;

  constructor(
    private readonly list: HTMLOListElement,
    private readonly extras: Extras,
  ) {
    this.follow = new Follow(list);
  }

  show(bubbles: Bubble[]): void {
    this.latest = bubbles;
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => this.flush());
    this.timer = window.setTimeout(() => this.flush(), FALLBACK_MS);
  }

  clear(): void {
    this.cancel();
    this.latest = null;
    this.shown.clear();
    this.list.replaceChildren();
    this.follow.jump();
  }

  private cancel(): void {
    cancelAnimationFrame(this.frame);
    clearTimeout(this.timer);
    this.frame = this.timer = 0;
  }

  private flush(): void {
    this.cancel();
    const bubbles = this.latest;
    if (!bubbles) return;
    this.latest = null;
    const wanted = bubbles.map((b) => this.node(b));
    const keep = new Set<Element>(wanted);
    for (const child of [...this.list.children]) if (!keep.has(child)) child.remove();
    wanted.forEach((li, i) => {
      if (this.list.children[i] !== li) this.list.insertBefore(li, this.list.children[i] ?? null);
    });
    const keys = new Set(bubbles.map((b) => b.key));
    for (const key of this.shown.keys()) if (!keys.has(key)) this.shown.delete(key);
    this.follow.changed();
  }

  private node(b: Bubble): HTMLLIElement {
    const shape = shapeOf(b);
    const old = this.shown.get(b.key);
    if (old && old.shape === shape) {
      if (old.text !== b.text) {
        old.body.replaceChildren(markdown(b.text));
        old.text = b.text;
      }
      return old.li;
    }
    const li = document.createElement("li");
    li.className = `bubble ${b.role}${b.streaming ? " streaming" : ""}${b.error ? " failed" : ""}`;
    li.dataset.key = b.key;
    const who = document.createElement("div");
    who.className = "who";
    who.textContent = b.role === "assistant" ? "assistant" : b.user || b.role;
    if (b.imported) who.textContent += ` · ${b.imported}`;
    const body = document.createElement("div");
    body.className = "text";
    body.append(markdown(b.text));
    li.append(who, body);
    if (b.streaming && !b.text) li.append(loadingDots());
    li.append(...this.extras(b));
    if (b.error) {
      const err = document.createElement("div");
      err.className = "error";
      err.textContent = b.error;
      li.append(err);
    }
    old?.li.replaceWith(li);
    this.shown.set(b.key, { li, shape, text: b.text, body });
    return li;
  }
}

/** Everything a bubble shows except its text (a streaming text only re-renders its box). */
function shapeOf(b: Bubble): string {
  return JSON.stringify([
    b.role,
    b.user,
    b.imported,
    b.streaming,
    b.streaming && !b.text,
    b.error,
    String(b.seq),
    b.siblings.map(String),
    b.rating,
    b.attachments.map((a) => a.sha256),
    b.streaming ? "" : b.text,
  ]);
}

function loadingDots(): HTMLElement {
  const span = document.createElement("span");
  span.className = "loading";
  span.setAttribute("aria-label", "loading");
  span.textContent = "•••";
  return span;
}
