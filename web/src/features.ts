// The chat features on the page: the server's thread list, search, per-message actions
// (feedback, regenerate, edit, branch arrows) and attachments. DOM built with textContent
// only: nothing a user wrote is ever parsed as HTML.
import { ConnectError } from "@connectrpc/connect";
import { Rating, type AttachmentRef } from "./gen/durablechat/v1/common_pb";
import { api, type Bubble } from "./thread";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** Files uploaded for the next prompt. */
export const pending: { sha256: string; filename: string }[] = [];

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text = "",
  className = "",
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.textContent = text;
  if (className) node.className = className;
  return node;
}

export async function listThreads(current: string): Promise<void> {
  try {
    const archived = $<HTMLInputElement>("show-archived").checked;
    const reply = await api.listThreads({ limit: 50, archived });
    $("threads").replaceChildren(
      ...reply.threads.map((t) => {
        const li = el("li");
        const a = el("a", t.title || t.preview.slice(0, 40) || t.sessionId.slice(0, 12));
        a.href = `#t=${encodeURIComponent(t.sessionId)}`;
        if (t.sessionId === current) a.className = "current";
        li.append(a);
        if (t.pinned) li.prepend(el("span", "★ ", "pin"));
        if (t.unreadCount > 0n && t.sessionId !== current) {
          li.append(el("span", String(t.unreadCount), "unread"));
        }
        return li;
      }),
    );
    if (current) await api.markRead({ sessionId: current });
  } catch (err) {
    console.warn("thread list", ConnectError.from(err).rawMessage);
  }
}

type Hit = {
  sessionId: string;
  seq: number;
  snippet: string;
  highlights: [number, number][];
  title: string;
};

export async function search(query: string): Promise<void> {
  const results = $<HTMLOListElement>("results");
  if (!query.trim()) {
    results.replaceChildren();
    return;
  }
  const reply = await fetch(`/api/search?q=${encodeURIComponent(query)}`);
  const body = (await reply.json()) as { hits?: Hit[]; error?: { message: string } };
  if (!reply.ok) {
    results.replaceChildren(el("li", body.error?.message ?? reply.statusText, "error"));
    return;
  }
  const hits = body.hits ?? [];
  results.replaceChildren(
    ...(hits.length ? hits : []).map((hit) => {
      const a = el("a", "", "hit");
      a.href = `#t=${encodeURIComponent(hit.sessionId)}`;
      a.append(el("strong", hit.title || hit.sessionId.slice(0, 12)), el("br"));
      const chars = Array.from(hit.snippet); // highlights count code points, not UTF-16 units
      const text = (from: number, to?: number) => chars.slice(from, to).join("");
      let at = 0;
      for (const [start, end] of hit.highlights) {
        a.append(text(at, start), el("mark", text(start, end)));
        at = end;
      }
      a.append(text(at));
      const li = el("li");
      li.append(a);
      return li;
    }),
    ...(hits.length ? [] : [el("li", "No matches.", "empty")]),
  );
}

export function attachmentLinks(sessionId: string, refs: AttachmentRef[]): HTMLElement {
  const box = el("div", "", "files");
  for (const ref of refs) {
    const a = el("a", `⇩ ${ref.filename}`);
    a.href = `/api/chat/session/${encodeURIComponent(sessionId)}/attachments/${ref.sha256}`;
    a.setAttribute("download", ref.filename);
    box.append(a);
  }
  return box;
}

export async function upload(input: HTMLInputElement, show: (text: string) => void): Promise<void> {
  const file = input.files?.[0];
  if (!file) return;
  show(`uploading ${file.name}…`);
  const reply = await fetch(`/api/attachments?filename=${encodeURIComponent(file.name)}`, {
    method: "POST",
    body: file,
  });
  const body = (await reply.json()) as { sha256?: string; error?: { message: string } };
  input.value = "";
  if (!reply.ok || !body.sha256) {
    show(`not attached: ${body.error?.message ?? reply.statusText}`);
    return;
  }
  pending.push({ sha256: body.sha256, filename: file.name });
  show(pending.map((p) => `+ ${p.filename}`).join(" "));
}

/** The buttons under a stored message. */
export function actions(sessionId: string, b: Bubble, fail: (message: string) => void): HTMLElement {
  const bar = el("div", "", "tools");
  const act = (label: string, title: string, run: () => Promise<unknown>) => {
    const button = el("button", label);
    button.type = "button";
    button.title = title;
    button.setAttribute("aria-label", title);
    button.addEventListener("click", () => {
      run().catch((err) => fail(ConnectError.from(err).rawMessage));
    });
    bar.append(button);
    return button;
  };
  const messageSeq = b.seq;
  if (b.siblings.length > 1) {
    const at = b.siblings.indexOf(b.seq);
    const go = (to: number) => () => api.selectBranch({ sessionId, messageSeq: b.siblings[to] });
    if (at > 0) act("‹", "previous version", go(at - 1));
    bar.append(el("span", `${at + 1}/${b.siblings.length}`, "version"));
    if (at < b.siblings.length - 1) act("›", "next version", go(at + 1));
  }
  if (b.role === "assistant") {
    const rate = (rating: Rating) => () =>
      api.setFeedback({ sessionId, messageSeq, rating: b.rating === rating ? Rating.UNSPECIFIED : rating });
    act("Good", "good answer", rate(Rating.UP)).classList.toggle("on", b.rating === Rating.UP);
    act("Bad", "bad answer", rate(Rating.DOWN)).classList.toggle("on", b.rating === Rating.DOWN);
    act("↻ Again", "regenerate", () => api.regenerateAnswer({ sessionId, messageSeq }));
  } else {
    act("Edit", "edit", async () => {
      const content = window.prompt("Edit the message (a new branch keeps the old one):", b.text);
      if (content?.trim()) await api.editMessage({ sessionId, messageSeq, content });
    });
  }
  return bar;
}

/** The open thread's own tools: rename, pin, archive, export, delete (docs/threads.md). */
export function threadTools(current: () => string, done: (message: string) => void): void {
  const run = (id: string, work: (sessionId: string) => Promise<string>) => {
    $(id).addEventListener("click", (event) => {
      const sessionId = current();
      if (!sessionId) return;
      if (id !== "export") event.preventDefault();
      work(sessionId).then(done, (err) => done(ConnectError.from(err).rawMessage));
    });
  };
  run("rename", async (sessionId) => {
    const title = window.prompt("Title of this thread:");
    if (!title?.trim()) return "";
    await api.renameThread({ sessionId, title });
    return "Renamed.";
  });
  run("pin", async (sessionId) => {
    await api.setThreadFlags({ sessionId, pinned: true });
    return "Pinned: it stays on top of your list.";
  });
  run("archive", async (sessionId) => {
    await api.setThreadFlags({ sessionId, archived: true });
    return "Archived: find it under “archived threads”.";
  });
  run("delete", async (sessionId) => {
    if (!window.confirm("Delete this thread for everyone? Its owner can restore it for 30 days."))
      return "";
    await api.deleteThread({ sessionId });
    return "Deleted.";
  });
  run("export", async (sessionId) => {
    ($<HTMLAnchorElement>("export")).href = `/api/threads/${encodeURIComponent(sessionId)}/export`;
    return "";
  });
}
