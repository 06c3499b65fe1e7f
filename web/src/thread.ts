// One thread's stream over gRPC-web, resumed from its cursor after any break (docs/resume.md):
// every event after the cursor arrives once, in order, so the view never shows a duplicate.
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AnswerStatus, Role } from "./gen/durablechat/v1/common_pb";
import { SessionService, type SessionEvent } from "./gen/durablechat/v1/session_pb";

export type Bubble = {
  key: string; // "m<seq>" for a stored message, "a<answer seq>" for an answer
  role: "user" | "assistant" | "system";
  user: string;
  text: string;
  streaming: boolean;
  error: string;
};

export type Listener = (bubbles: Bubble[], streaming: boolean, online: boolean) => void;

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
  private online = false;
  presence: string[] = []; // users connected now (AUTH_MODE=jwt)

  constructor(
    readonly id: string,
    private readonly listener: Listener,
    private readonly denied: Denied = () => {},
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
          this.setOnline(false);
          this.denied(e.rawMessage);
          return;
        }
        console.warn("stream broke; resuming from the cursor", e.message);
      }
      this.setOnline(false);
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 3000);
    }
  }

  private apply(event: SessionEvent): void {
    const kind = event.kind;
    switch (kind.case) {
      case "caughtUp":
        [this.seq, this.offset] = [event.seq, event.offset];
        this.setOnline(true);
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
        if (m) this.bubbles.set(`m${m.seq}`, bubble(`m${m.seq}`, ROLES[m.role], m.user, m.content));
        break;
      }
      case "answerStarted":
        this.seq = event.seq;
        this.open.add(event.seq);
        this.answer(event.seq);
        break;
      case "answerEnded": {
        [this.seq, this.offset] = [event.seq, 0];
        const m = kind.value.message;
        if (!m) break;
        this.open.delete(m.answerSeq);
        const b = this.answer(m.answerSeq);
        b.text = m.content; // the stored text is the truth
        b.streaming = false;
        if (m.answerStatus !== AnswerStatus.COMPLETED) {
          b.error = kind.value.error || `answer ${AnswerStatus[m.answerStatus].toLowerCase()}`;
        }
        break;
      }
      case "presenceChanged": // repeats the cursor: nothing to move
        this.presence = kind.value.users;
        break;
      default:
        this.seq = event.seq;
        return;
    }
    this.emit();
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

  private setOnline(online: boolean): void {
    if (online !== this.online) {
      this.online = online;
      this.emit();
    }
  }

  private emit(): void {
    this.listener([...this.bubbles.values()], this.open.size > 0, this.online);
  }
}

function bubble(key: string, role: Bubble["role"], user: string, text: string): Bubble {
  return { key, role: role ?? "user", user, text, streaming: false, error: "" };
}
