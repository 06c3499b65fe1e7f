// durable-chat's TypeScript client: ChatSessionClient (seed 003's operations) over gRPC-web,
// for browsers and Node 20+ (fetch), through Envoy. Stubs in ./gen come from `make clients`.
import { ConnectError, Code, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AnswerStatus, Role } from "./gen/durablechat/v1/common_pb";
import { SessionService, type SessionEvent } from "./gen/durablechat/v1/session_pb";

export type ChatMessage = { seq: bigint; role: "user" | "assistant" | "system"; content: string; user: string; ts: number };
export type Answer = { text: string; status: string; error: string };
type State = Record<string, unknown>;

const ROLES: Record<string, Role> = { user: Role.USER, assistant: Role.ASSISTANT, system: Role.SYSTEM };
const ROLE_NAMES: Record<number, ChatMessage["role"]> = { [Role.USER]: "user", [Role.ASSISTANT]: "assistant", [Role.SYSTEM]: "system" };
const RETRYABLE = new Set([Code.Unavailable, Code.DeadlineExceeded]);

export class ChatSessionClient {
  private readonly api: Client<typeof SessionService>;

  /** `baseUrl`: Envoy's URL (the page's origin in a browser). `token`: a JWT sent as
   * `authorization: Bearer` on every call (AUTH_MODE=jwt); in a browser the login cookie
   * works without it. */
  constructor(baseUrl: string, readonly sessionId: string, token = "") {
    const interceptors: Interceptor[] = token
      ? [(next) => (request) => (request.header.set("authorization", `Bearer ${token}`), next(request))]
      : [];
    this.api = createClient(SessionService, createGrpcWebTransport({ baseUrl, interceptors }));
  }

  /** The state object plus `messages`, `createdAt` and `lastAccessedAt` (ms), as seed 001. */
  async getState(): Promise<State> {
    const { session } = await this.api.getSession({ sessionId: this.sessionId });
    const state = JSON.parse(session?.stateJson || "{}") as State;
    state.messages = await this.getMessages();
    state.createdAt = ms(session?.createdAt);
    state.lastAccessedAt = ms(session?.lastAccessedAt);
    return state;
  }

  /** Applies a JSON merge patch (null deletes a key); returns the new version. */
  async updateState(patch: State, expectedVersion?: bigint): Promise<bigint> {
    const reply = await this.api.updateState({
      sessionId: this.sessionId,
      patchJson: JSON.stringify(patch),
      expectedVersion,
    });
    return reply.version;
  }

  async addMessage(message: { role: ChatMessage["role"]; content: string; user?: string; clientMessageId?: string }): Promise<bigint> {
    const request = {
      sessionId: this.sessionId,
      role: ROLES[message.role],
      content: message.content,
      user: message.user ?? "",
      clientMessageId: message.clientMessageId ?? crypto.randomUUID(), // retried: stored once
    };
    const reply = await retrying(() => this.api.appendMessage(request));
    return reply.message?.seq ?? 0n;
  }

  async getMessages(): Promise<ChatMessage[]> {
    const out: ChatMessage[] = [];
    let afterSeq = 0n;
    for (;;) {
      const page = await this.api.listMessages({ sessionId: this.sessionId, afterSeq });
      for (const m of page.messages) {
        out.push({ seq: m.seq, role: ROLE_NAMES[m.role] ?? "user", content: m.content, user: m.user, ts: ms(m.createdAt) });
      }
      if (!page.hasMore || page.messages.length === 0) return out;
      afterSeq = page.messages[page.messages.length - 1].seq;
    }
  }

  setPendingMatch(match: unknown): Promise<bigint> { return this.updateState({ pendingMatch: match }); }
  async getPendingMatch(): Promise<unknown> { return (await this.stateKey("pendingMatch")) ?? null; }
  setBookingInfo(info: unknown): Promise<bigint> { return this.updateState({ bookingInfo: info }); }
  async getBookingInfo(): Promise<unknown> { return (await this.stateKey("bookingInfo")) ?? null; }
  setSearchCriteria(criteria: unknown): Promise<bigint> { return this.updateState({ searchCriteria: criteria }); }
  async getSearchCriteria(): Promise<unknown> { return (await this.stateKey("searchCriteria")) ?? null; }

  /** Sends a prompt; `onText` gets the answer's text as it streams. Resolves with the ended
   * answer. A broken stream is resumed from its cursor: no gap, no duplicate. `onRestart` is
   * called when the answer starts again from nothing (its owner died and the model could not
   * continue the stored text, ANSWER_CONTINUE=restart): drop the text `onText` gave so far,
   * the text that follows replaces it. */
  async ask(
    content: string,
    onText: (text: string) => void = () => {},
    user = "",
    onRestart: () => void = () => {},
  ): Promise<Answer> {
    const stop = new AbortController();
    let cursor: { seq: bigint; offset: number } | null = null;
    let answerSeq = -1n;
    let sendError: unknown = null;
    // One id for every attempt: a resent prompt returns the first turn, never a second answer.
    const prompt = { sessionId: this.sessionId, content, user, clientMessageId: crypto.randomUUID() };
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          const request = cursor
            ? { sessionId: this.sessionId, afterSeq: cursor.seq, afterOffset: cursor.offset }
            : { sessionId: this.sessionId };
          for await (const reply of this.api.subscribe(request, { signal: stop.signal })) {
            const event = reply.event as SessionEvent;
            cursor = advance(cursor, event);
            const kind = event.kind;
            if (kind.case === "caughtUp" && answerSeq < 0n) {
              // Subscribed (from now, or resumed): nothing of the answer can slip past.
              try {
                answerSeq = (await retrying(() => this.api.sendPrompt(prompt))).answerSeq;
              } catch (err) {
                sendError = err; // not resubscribed: the prompt itself failed
                throw err;
              }
            } else if (kind.case === "answerDelta" && event.seq === answerSeq) {
              onText(kind.value.text);
            } else if (kind.case === "answerRestarted" && kind.value.interrupted?.answerSeq === answerSeq) {
              onRestart();
            } else if (kind.case === "answerEnded" && kind.value.message?.answerSeq === answerSeq) {
              const m = kind.value.message;
              return { text: m.content, status: AnswerStatus[m.answerStatus].toLowerCase(), error: kind.value.error };
            }
          }
        } catch (err) {
          const e = ConnectError.from(err);
          if (sendError !== null || !RETRYABLE.has(e.code) || cursor === null || attempt > 20) throw e;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      stop.abort();
    }
  }

  /** Cancels the streaming answer; false when none was streaming. */
  async cancel(): Promise<boolean> {
    try {
      return (await this.api.cancelAnswer({ sessionId: this.sessionId, answerSeq: 0n })).cancelled;
    } catch (err) {
      if (ConnectError.from(err).code === Code.InvalidArgument) return false;
      throw err;
    }
  }

  private async stateKey(key: string): Promise<unknown> {
    const { session } = await this.api.getSession({ sessionId: this.sessionId });
    return (JSON.parse(session?.stateJson || "{}") as State)[key];
  }
}

/** The resume cursor after `event` (docs/resume.md). */
export function advance(cursor: { seq: bigint; offset: number } | null, event: SessionEvent): { seq: bigint; offset: number } | null {
  switch (event.kind.case) {
    case "caughtUp":
      return { seq: event.seq, offset: event.offset };
    case "answerDelta":
      return cursor && { seq: cursor.seq, offset: event.offset + 1 };
    case "answerEnded":
    case "answerRestarted":
      return { seq: event.seq, offset: 0 };
    default:
      return { seq: event.seq, offset: cursor?.offset ?? 0 };
  }
}

async function retrying<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const e = ConnectError.from(err);
      if (!RETRYABLE.has(e.code) || attempt >= 7) throw e;
      await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
    }
  }
}

function ms(ts?: { seconds: bigint; nanos: number }): number {
  return ts ? Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6) : 0;
}
