// The chat page: the signed-in user's threads (from the server's thread list; kept in this
// browser without access control), the open thread's active branch streamed over gRPC-web
// through Envoy (thread.ts), prompts with an idempotency id and attachments, cancel, share
// links, feedback, regenerate, edit, branch arrows, and search (features.ts).
import { Code, ConnectError } from "@connectrpc/connect";
import { AccessRole } from "./gen/durablechat/v1/access_pb";
import {
  actions,
  attachmentLinks,
  listThreads,
  pending,
  search,
  threadTools,
  upload,
} from "./features";
import { copyButtons } from "./markdown";
import { MessageList } from "./messages";
import { api, rateLimited, Thread, type Bubble, type Link } from "./thread";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const THREADS_KEY = "durablechat.threads";
const USER_KEY = "durablechat.user";

type Known = { id: string; title: string };
type Me = { user: string; auth: "off" | "jwt"; devLogin: boolean };

let thread: Thread | null = null;
let me: Me = { user: "", auth: "off", devLogin: false };

function known(): Known[] {
  try {
    return JSON.parse(localStorage.getItem(THREADS_KEY) ?? "[]") as Known[];
  } catch {
    return [];
  }
}

function remember(id: string, title?: string): void {
  const list = known().filter((t) => t.id !== id);
  const old = known().find((t) => t.id === id);
  list.unshift({ id, title: title ?? old?.title ?? id });
  localStorage.setItem(THREADS_KEY, JSON.stringify(list.slice(0, 50)));
  renderThreads();
}

function renderThreads(): void {
  if (me.auth === "jwt") {
    void listThreads(thread?.id ?? "");
    return;
  }
  const ul = $<HTMLUListElement>("threads");
  ul.replaceChildren(
    ...known().map((t) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `#t=${encodeURIComponent(t.id)}`;
      a.textContent = t.title;
      if (t.id === thread?.id) a.className = "current";
      li.append(a);
      return li;
    }),
  );
}

const messages = new MessageList($<HTMLOListElement>("messages"), (b) => {
  const extras: HTMLElement[] = [];
  if (b.attachments.length) extras.push(attachmentLinks(thread?.id ?? "", b.attachments));
  if (thread && b.seq > 0n) extras.push(actions(thread.id, b, (e) => ($("notice").textContent = e)));
  return extras;
});

const LINK_TEXT: Record<Link, string> = {
  connecting: "connecting…",
  online: "connected",
  reconnecting: "reconnecting…",
  limited: "rate limited: retrying…",
};

function render(bubbles: Bubble[], streaming: boolean, link: Link): void {
  messages.show(bubbles);
  $<HTMLButtonElement>("cancel").disabled = !streaming;
  const status = link === "online" && streaming ? "answering…" : LINK_TEXT[link];
  $("status").textContent = status;
  $("status").className = link === "online" ? "online" : link === "limited" ? "limited" : "offline";
  const present = thread?.presence ?? [];
  $("presence").textContent = present.length ? `here: ${present.join(", ")}` : "";
  $("thread-title").textContent = thread?.title ?? "";
  const firstUser = bubbles.find((b) => b.role === "user");
  if (thread && firstUser && me.auth !== "jwt") {
    const title = firstUser.text.slice(0, 40);
    if (known().find((t) => t.id === thread?.id)?.title !== title) remember(thread.id, title);
  }
}

function notice(text: string, kind = ""): void {
  $("notice").textContent = text;
  $("notice").className = kind;
}

async function open(id: string, invite = ""): Promise<void> {
  thread?.close();
  thread = null;
  $("thread-id").textContent = id;
  messages.clear();
  if (me.auth === "jwt") {
    if (!me.user) {
      $("notice").textContent = "Sign in: type your name under “You are” and press Enter.";
      return;
    }
    try {
      if (invite) await api.joinRoom({ sessionId: id, code: invite });
      await api.createRoom({ sessionId: id }); // claims a new thread, or checks membership
    } catch (err) {
      const e = ConnectError.from(err);
      $("notice").textContent =
        e.code === Code.NotFound
          ? "No access to this thread (ask its owner for an invite link)."
          : `Cannot open: ${e.rawMessage}`;
      return;
    }
    if (invite) history.replaceState(null, "", `#t=${id}`); // the code leaves the address bar
  }
  $("notice").textContent = "";
  $<HTMLAnchorElement>("export").href = `/api/threads/${encodeURIComponent(id)}/export`;
  thread = new Thread(
    id,
    render,
    (message) => {
      $("notice").textContent = `No access: ${message}`;
    },
    me.user,
    () => notice("The thread moved to a new owner; the stream goes on from where it was.", "moved"),
  );
  remember(id);
  thread.start();
  $<HTMLTextAreaElement>("prompt").focus();
}

async function newId(): Promise<string> {
  if (me.auth === "jwt" && me.user) return (await api.createRoom({})).sessionId; // 64 hex
  return `t-${crypto.randomUUID().slice(0, 13)}`;
}

function fromHash(): { id: string; invite: string } | null {
  const match = /^#t=([A-Za-z0-9_-]{1,128})(?:&invite=([A-Za-z0-9_-]{1,128}))?$/.exec(
    location.hash,
  );
  return match ? { id: match[1], invite: match[2] ?? "" } : null;
}

async function whoami(): Promise<Me> {
  try {
    const reply = await fetch("/api/me");
    return reply.ok ? ((await reply.json()) as Me) : me;
  } catch {
    return me;
  }
}

async function signIn(name: string): Promise<void> {
  const reply = await fetch("/api/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: name }),
  });
  if (!reply.ok) {
    const body = (await reply.json()) as { error?: { message?: string } };
    $("notice").textContent = `Sign-in failed: ${body.error?.message ?? reply.statusText}`;
    return;
  }
  me = await whoami();
  const target = fromHash();
  const id = target?.id ?? (await newId());
  if (!target) history.replaceState(null, "", `#t=${id}`);
  await open(id, target?.invite ?? "");
}

async function send(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const box = $<HTMLTextAreaElement>("prompt");
  const content = box.value.trim();
  if (!content || !thread) return;
  const request = {
    sessionId: thread.id,
    content,
    user: localStorage.getItem(USER_KEY) ?? "me",
    clientMessageId: crypto.randomUUID(), // a retry of this prompt never asks the model twice
    attachments: pending.splice(0),
  };
  box.value = "";
  $("attached").textContent = "";
  messages.follow.jump(); // the reader's own prompt: follow its answer
  for (let attempt = 0; ; attempt++) {
    try {
      await api.sendPrompt(request);
      $("notice").textContent = "";
      renderThreads();
      return;
    } catch (err) {
      const e = ConnectError.from(err);
      if (rateLimited(e)) {
        notice(`Rate limited, not sent: ${e.rawMessage}. Try again in a moment.`, "limited");
        box.value = content;
        return;
      }
      if (attempt >= 4 || !["unavailable", "deadline_exceeded"].includes(codeName(e))) {
        $("notice").textContent = `Not sent: ${e.rawMessage}`;
        box.value = content;
        return;
      }
      await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
    }
  }
}

function codeName(e: ConnectError): string {
  const names: Record<number, string> = { 4: "deadline_exceeded", 14: "unavailable" };
  return names[e.code] ?? String(e.code);
}

async function cancel(): Promise<void> {
  if (!thread) return;
  try {
    await api.cancelAnswer({ sessionId: thread.id, answerSeq: 0n });
  } catch (err) {
    $("notice").textContent = `Cancel failed: ${ConnectError.from(err).rawMessage}`;
  }
}

async function share(): Promise<void> {
  let link = `${location.origin}${location.pathname}#t=${encodeURIComponent(thread?.id ?? "")}`;
  if (me.auth === "jwt" && thread) {
    try {
      const invite = await api.createInvite({ sessionId: thread.id, role: AccessRole.MEMBER });
      link = `${location.origin}${invite.sharePath}`;
    } catch (err) {
      $("notice").textContent = `Only the owner can invite: ${ConnectError.from(err).rawMessage}`;
    }
  }
  $<HTMLInputElement>("share-link").value = link;
  try {
    await navigator.clipboard.writeText(link);
    $("notice").textContent = "Link copied.";
  } catch {
    $("notice").textContent = "Copy the link above.";
  }
}

async function main(): Promise<void> {
  me = await whoami();
  const user = $<HTMLInputElement>("user");
  user.value = me.auth === "jwt" ? me.user : (localStorage.getItem(USER_KEY) ?? "me");
  user.addEventListener("change", () => {
    if (me.auth === "jwt") void signIn(user.value.trim());
    else localStorage.setItem(USER_KEY, user.value || "me");
  });
  $<HTMLFormElement>("composer").addEventListener("submit", (e) => void send(e));
  $<HTMLTextAreaElement>("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $<HTMLFormElement>("composer").requestSubmit();
    }
  });
  $("cancel").addEventListener("click", () => void cancel());
  copyButtons($("messages"));
  $<HTMLInputElement>("file").addEventListener("change", (e) => {
    void upload(e.target as HTMLInputElement, (text) => ($("attached").textContent = text));
  });
  $<HTMLFormElement>("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    void search($<HTMLInputElement>("search").value);
  });
  setInterval(renderThreads, 5000); // unread counts and titles of the other threads
  $("show-archived").addEventListener("change", renderThreads);
  threadTools(
    () => thread?.id ?? "",
    (message) => {
      if (message) $("notice").textContent = message;
      renderThreads();
    },
  );
  $("share").addEventListener("click", () => void share());
  $("new-thread").addEventListener("click", () => {
    void newId().then((id) => (location.hash = `#t=${id}`));
  });
  window.addEventListener("hashchange", () => {
    const target = fromHash();
    if (target && target.id !== thread?.id) void open(target.id, target.invite);
  });
  const target = fromHash();
  if (me.auth === "jwt" && !me.user) {
    $("notice").textContent = "Sign in: type your name under “You are” and press Enter.";
    return; // signIn() opens the thread (or a new room) once there is someone to own it
  }
  const id = target?.id ?? known()[0]?.id ?? (await newId());
  if (!target) history.replaceState(null, "", `#t=${id}`);
  await open(id, target?.invite ?? "");
}

void main();
