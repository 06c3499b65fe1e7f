// One thread's stream over gRPC-web, resumed from its cursor after any break (docs/resume.md):
// every event after the cursor arrives once, in order, so the view never shows a duplicate.
// The view is the active branch (docs/branches.md): the path from the head to the first
// message, with answers still streaming for a message on it; the head follows the same rules
// as the server's (a new message becomes the head; an answer whose parent is the head too).
// The listener hears the stream's state (Link): a refusal by a rate limit (RESOURCE_EXHAUSTED)
// is "limited", any other break "reconnecting", both retried from the cursor; an event stamped
// with a higher owner epoch than before calls `moved` (the session changed pods).
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import {
  AnswerStatus,
  Rating,
  Role,
  type AttachmentRef,
  type Message,
} from "./gen/durablechat/v1/common_pb";
import { SessionService, type SessionEvent } from "./gen/durablechat/v1/session_pb";

export type Bubble = {
  key: string; // "m<seq>" for a stored message, "a<answer seq>" for an answer
  role: "user" | "assistant" | "system";
  user: string;
  text: string;
  streaming: boolean;
  error: string;
  seq: bigint; // the stored message's seq (0 while an answer streams)
  parent: bigint;
  siblings: bigint[]; // the stored messages that share its parent, oldest first (it included)
  rating: Rating; // the signed-in user's feedback on an answer
  attachments: AttachmentRef[];
  imported: string; // "imported by <importer>" for what an import stored, else ""
};

/** The stream's state: live, broken and resuming, or refused by a rate limit (resuming later). */
export type Link = "connecting" | "online" | "reconnecting" | "limited";

export type Listener = (bubbles: Bubble[], streaming: boolean, link: Link) => void;

// Called when events come from a new owner (a higher epoch than the stream had): the session
// moved to another pod (a crash, a drain); the stream goes on from its cursor.
export type Moved = () => void;

// Called when the stream ends for good: the user has no access (never had, or was removed).
export type Denied = (message: string) => void;

const DENIED = [Code.NotFound, Code.PermissionDenied, Code.Unauthenticated];

export const api: Client<typeof SessionService> = createClient(
  SessionService,
  createGrpcWebTransport({ baseUrl: location.origin }),
);

const ROLES: Record<number, Bubble["role"]> = {
  [Role.USER]: "user",
  [Role.ASSISTANT]: "assistant",
  [Role.SYSTEM]: "system",
};

export class Thread {
  private bubbles = new Map<string, Bubble>();
  private seq = 0n; // cursor: last log seq seen
  private offset = 0; // cursor: batches seen of the answer streaming at `seq`
  private open = new Set<bigint>(); // answers started and not ended
  private stop = new AbortController();
  private link: Link = "connecting";
  private epoch = 0n; // the owner epoch of the last event
  private head = 0n; // the last message of the active branch
  private parents = new Map<bigint, bigint>(); // message seq -> parent seq
  private children = new Map<bigint, bigint[]>(); // parent seq -> its messages, in seq order
  private prompts = new Map<bigint, bigint>(); // answer seq -> the message it answers
  presence: string[] = []; // users connected now (AUTH_MODE=jwt)
  title = "";

  constructor(
    readonly id: string,
    private readonly listener: Listener,
    private readonly denied: Denied = () => {},
    private readonly me: string = "",
    private readonly moved: Moved = () => {},
  ) {}

  start(): void {
    void this.follow();
  }

  close(): void {
    this.stop.abort();
  }

  private async follow(): Promise<void> {
    let backoff = 100;
    while (!this.stop.signal.aborted) {
      let next: Link = "reconnecting";
      try {
        const request = { sessionId: this.id, afterSeq: this.seq, afterOffset: this.offset };
        for await (const reply of api.subscribe(request, { signal: this.stop.signal })) {
          if (reply.event) this.apply(reply.event);
          backoff = 100;
        }
      } catch (err) {
        if (this.stop.signal.aborted) return;
        const e = ConnectError.from(err);
        if (DENIED.includes(e.code)) {
          this.setLink("reconnecting");
          this.denied(e.rawMessage);
          return;
        }
        console.warn("stream broke; resuming from the cursor", e.message);
        if (rateLimited(e)) {
          next = "limited"; // the limit refills by itself: try again, slowly
          backoff = Math.max(backoff, 3000);
        }
      }
      this.setLink(next);
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 3000);
    }
  }

  private apply(event: SessionEvent): void {
    const kind = event.kind;
    if (event.epoch > this.epoch) {
      if (this.epoch > 0n) this.moved();
      this.epoch = event.epoch;
    }
    switch (kind.case) {
      case "caughtUp":
        [this.seq, this.offset] = [event.seq, event.offset];
        this.setLink("online");
        return;
      case "answerDelta": {
        this.offset = event.offset + 1;
        const bubble = this.answer(event.seq);
        bubble.text += kind.value.text;
        break;
      }
      case "messageAppended": {
        this.seq = event.seq;
        const m = kind.value.message;
        if (m) this.stored(`m${m.seq}`, m, true);
        break;
      }
      case "answerStarted":
        this.seq = event.seq;
        this.open.add(event.seq);
        this.prompts.set(event.seq, kind.value.promptSeq);
        this.answer(event.seq);
        break;
      case "answerEnded": {
        [this.seq, this.offset] = [event.seq, 0];
        const m = kind.value.message;
        if (!m) break;
        this.open.delete(m.answerSeq);
        const b = this.stored(`a${m.answerSeq}`, m, m.parentSeq === this.head);
        b.text = m.content; // the stored text is the truth
        b.streaming = false;
        if (m.answerStatus !== AnswerStatus.COMPLETED) {
          b.error = kind.value.error || `answer ${AnswerStatus[m.answerStatus].toLowerCase()}`;
        }
        break;
      }
      case "answerRestarted": {
        // The answer starts again (its owner died and the model could not continue it): its
        // text so far becomes an interrupted version beside it; the new text REPLACES it.
        [this.seq, this.offset] = [event.seq, 0];
        const m = kind.value.interrupted;
        if (!m) break;
        const version = this.stored(`m${m.seq}`, m, false);
        version.error = kind.value.error || "interrupted";
        this.answer(m.answerSeq).text = "";
        break;
      }
      case "presenceChanged": // repeats the cursor: nothing to move
        this.presence = kind.value.users;
        break;
      case "branchSelected":
        this.seq = event.seq;
        this.head = kind.value.headSeq;
        break;
      case "feedbackChanged": {
        this.seq = event.seq;
        const f = kind.value.feedback;
        const b = this.bySeq(kind.value.messageSeq);
        if (b && f && f.user === this.me && !f.imported) b.rating = f.rating;
        break;
      }
      case "threadChanged":
        this.seq = event.seq;
        if (kind.value.title) this.title = kind.value.title;
        break;
      default:
        this.seq = event.seq;
        return;
    }
    this.emit();
  }

  // A stored message: placed in the tree; `advance` makes it the head.
  private stored(key: string, m: Message, advance: boolean): Bubble {
    // An imported message names its author as the file did, marked with its importer.
    const author = m.imported ? m.imported.namedUser : m.user;
    const b = this.bubbles.get(key) ?? bubble(key, ROLES[m.role], author, m.content);
    const by = m.imported?.by;
    const imported = m.imported ? (by ? `imported by ${by}` : "imported") : "";
    Object.assign(b, { seq: m.seq, parent: m.parentSeq, attachments: m.attachments, imported });
    const mine = m.feedback.find((f) => f.user === this.me && !f.imported);
    if (mine) b.rating = mine.rating;
    this.bubbles.set(key, b);
    if (!this.parents.has(m.seq)) {
      // Messages arrive in log order, so each parent's list stays sorted by seq.
      this.parents.set(m.seq, m.parentSeq);
      this.children.set(m.parentSeq, [...(this.children.get(m.parentSeq) ?? []), m.seq]);
    }
    if (advance) this.head = m.seq;
    return b;
  }

  private bySeq(seq: bigint): Bubble | undefined {
    return [...this.bubbles.values()].find((b) => b.seq === seq);
  }

  // The active branch, oldest first, with answers streaming for one of its messages.
  private visible(): Bubble[] {
    const path = new Set<bigint>();
    for (let s = this.head; s > 0n; s = this.parents.get(s) ?? 0n) path.add(s);
    const shown = [...this.bubbles.values()].filter((b) =>
      b.seq > 0n ? path.has(b.seq) : path.has(this.prompts.get(BigInt(b.key.slice(1))) ?? -1n),
    );
    for (const b of shown) b.siblings = b.seq > 0n ? (this.children.get(b.parent) ?? [b.seq]) : [];
    const order = (b: Bubble) => (b.seq > 0n ? b.seq : BigInt(b.key.slice(1)));
    return shown.sort((a, b) => (order(a) < order(b) ? -1 : 1));
  }

  private answer(seq: bigint): Bubble {
    const key = `a${seq}`;
    let b = this.bubbles.get(key);
    if (!b) {
      b = bubble(key, "assistant", "", "");
      b.streaming = true;
      this.bubbles.set(key, b);
    }
    return b;
  }

  private setLink(link: Link): void {
    if (link !== this.link) {
      this.link = link;
      this.emit();
    }
  }

  private emit(): void {
    this.listener(this.visible(), this.open.size > 0, this.link);
  }
}

/** A refusal by a rate limit: RESOURCE_EXHAUSTED from a pod, or Envoy's per-IP limit (HTTP 429
 * with grpc-status 8, which gRPC-web clients read as UNAVAILABLE). */
export function rateLimited(e: ConnectError): boolean {
  return e.code === Code.ResourceExhausted || e.metadata.get("grpc-status") === "8";
}

function bubble(key: string, role: Bubble["role"], user: string, text: string): Bubble {
  return {
    key,
    role: role ?? "user",
    user,
    text,
    streaming: false,
    error: "",
    seq: 0n,
    parent: 0n,
    siblings: [],
    rating: Rating.UNSPECIFIED,
    attachments: [],
    imported: "",
  };
}
