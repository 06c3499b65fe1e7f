// node --test against a running system: DURABLECHAT_URL is Envoy's URL (the pytest wrapper,
// tests/clients/test_typescript_client.py, starts the system and Envoy).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ChatSessionClient } from "../src/index";

const url = process.env.DURABLECHAT_URL ?? "http://127.0.0.1:8000";
const tokens = (n: number) => Array.from({ length: n }, (_, i) => `tok${i}`).join(" ");

test("state helpers, messages and a streamed prompt", async () => {
  const chat = new ChatSessionClient(url, `ts-${Date.now()}`);
  await chat.setPendingMatch({ tutor: { id: 7 } });
  await chat.setSearchCriteria({ skill: "Python" });
  assert.deepEqual(await chat.getPendingMatch(), { tutor: { id: 7 } });
  await chat.setPendingMatch(null);
  assert.equal(await chat.getPendingMatch(), null);
  assert.deepEqual(await chat.getSearchCriteria(), { skill: "Python" });

  const seq = await chat.addMessage({ role: "user", content: "hi", clientMessageId: "m1" });
  assert.equal(await chat.addMessage({ role: "user", content: "hi", clientMessageId: "m1" }), seq);

  let streamed = "";
  const answer = await chat.ask("go tokens=25", (t) => { streamed += t; });
  assert.equal(streamed, tokens(25));
  assert.deepEqual(answer, { text: tokens(25), status: "completed", error: "" });
  const state = await chat.getState();
  const messages = state.messages as { role: string; content: string }[];
  assert.deepEqual(messages.map((m) => [m.role, m.content]), [
    ["user", "hi"], ["user", "go tokens=25"], ["assistant", tokens(25)],
  ]);
  assert.ok((state.createdAt as number) > 0);
});

test("a bad session id is refused with its status", async () => {
  const chat = new ChatSessionClient(url, "bad id!");
  await assert.rejects(chat.getState(), /invalid/i);
});
