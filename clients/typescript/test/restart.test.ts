// node --test: an answer whose owner is killed mid-answer, through Envoy (gRPC-web). The pytest
// wrapper (tests/clients/test_typescript_client.py) kills the owner once this test has written
// DURABLECHAT_KILL_FILE, and says in DURABLECHAT_RESTART whether the model answers afresh
// (ANSWER_CONTINUE=restart). The text the caller shows is never two generations glued, and at
// the end it is the stored answer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { ChatSessionClient } from "../src/index";

const url = process.env.DURABLECHAT_URL ?? "http://127.0.0.1:8000";
const killFile = process.env.DURABLECHAT_KILL_FILE ?? "";
const restart = process.env.DURABLECHAT_RESTART === "1";

// The beginning of one generation: `tok0 tok1 …` or `g<n>tok0 g<n>tok1 …` with one n.
function oneGeneration(text: string): boolean {
  const words = text.split(" ").filter((w) => w);
  const stems = new Set<string>();
  return words.every((w, i) => {
    const m = /^(g\d+)?tok(\d+)$/.exec(w);
    if (!m || Number(m[2]) !== i) return false;
    stems.add(m[1] ?? "");
    return stems.size === 1;
  });
}

test("an answer across an owner kill: replaced on restart, never glued", async () => {
  const chat = new ChatSessionClient(url, `ts-restart-${Date.now()}`);
  let shown = "";
  let restarts = 0;
  let glued = "";
  let killed = false;
  const answer = await chat.ask(
    "long tokens=400",
    (t) => {
      shown += t;
      if (!glued && !oneGeneration(shown)) glued = shown;
      if (!killed && shown.split(" ").length >= 50) {
        killed = true;
        writeFileSync(killFile, "now");
      }
    },
    "",
    () => {
      restarts += 1;
      shown = ""; // replace, never append
    },
  );
  assert.equal(glued, "");
  assert.equal(shown, answer.text);
  assert.equal(answer.status, "completed");
  assert.equal(restarts, restart ? 1 : 0);
  assert.ok(answer.text.startsWith(restart ? "g2tok0 " : "tok0 "), answer.text.slice(0, 40));
  const messages = await chat.getMessages();
  assert.equal(messages[messages.length - 1].content, answer.text);
});
