"""An answer survives the death of its owner: batches are stored before anyone sees them, the
next owner goes on from the stored text, and every subscriber ends with the stored text. Run
against both kinds of model (ANSWER_CONTINUE): one that continues a trailing assistant turn
(prefill: the answer is one generation, continued) and one that answers afresh (restart: the
dev model's fresh answers, each generation's words marked `g{n}`; the interrupted text is kept
as a version and every watcher replaces, never appends: no watcher ever shows two generations
glued together)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from common.ring import HashRing
from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from durablechat.v1 import common_pb2, session_pb2
from session_service.store.keys import answer_key
from tests.support.answer_watchers import GrpcWatcher
from tests.support.crash import Writers, assert_appends_kept, grpc_append, grpc_retryable
from tests.support.generations import KINDS, generation, one_generation
from tests.support.grpc_client import SessionClient, retrying
from tests.support.ledger import Ledger

pytestmark = pytest.mark.chaos

PODS = ["pod-a", "pod-b"]
TOKENS = 1000
FULL = " ".join(f"tok{i}" for i in range(TOKENS))


def start_two_pods(stack: Stack, model_env: dict[str, str], ai_env: dict[str, str]) -> Stack:
    stack.start_redis()
    stack.start_model(token_delay_ms=3, **model_env)
    stack.start_ai(**ai_env)
    for pod in PODS:
        stack.start_pod(pod)
    return stack


@pytest.fixture
def two_pods(own_stack: Stack) -> Stack:
    return start_two_pods(own_stack, {}, {})


def model_log(stack: Stack, msg: str) -> list[dict[str, Any]]:
    assert stack.model is not None
    return [
        json.loads(line)
        for line in stack.model.log_path.read_text().splitlines()
        if f'"{msg}"' in line
    ]


def model_calls(stack: Stack) -> list[dict[str, Any]]:
    return model_log(stack, "completion requested")


@pytest.mark.parametrize(("model_env", "ai_env"), KINDS)
async def test_answer_continues_on_another_pod_after_kill9_with_no_gap_or_duplicate(
    own_stack, model_env, ai_env
):
    two_pods = start_two_pods(own_stack, model_env, ai_env)
    restart = bool(ai_env)
    sid = next(s for s in (f"ans-{i}" for i in range(50)) if HashRing(PODS).owner(s) == "pod-a")
    client = SessionClient(two_pods.pod_addrs["pod-b"])
    # Writers on two more of pod-a's sessions: the kill lands while they are mid-call too.
    ledger = Ledger()
    others = [s for s in (f"ans-w{i}" for i in range(50)) if HashRing(PODS).owner(s) == "pod-a"]
    writers = Writers(ledger, grpc_append(lambda: client), others[:2], grpc_retryable)
    try:
        await client.append(sid, "warm up")
        sent = await client.prompt(sid, f"long answer tokens={TOKENS}", client_id="p1")
        watchers = [
            GrpcWatcher(client, sid, sent.answer_seq, shows=one_generation) for _ in range(3)
        ]
        tasks = [asyncio.create_task(w.run()) for w in watchers]

        await asyncio.wait_for(watchers[0].until_words(300), 30)
        writers.start()
        await writers.mid_call(2)
        two_pods.pods["pod-a"].kill9()
        # What the dead owner sent: every batch of it must be in Redis, at its offset.
        sent_by_dead_owner = [dict(w.first_generation) for w in watchers]
        assert two_pods.redis is not None
        with two_pods.redis.client() as redis_client:
            stored_batches = redis_client.lrange(answer_key(sid, sent.answer_seq), 0, -1)
        await writers.acked(ledger.count() + 10)  # on the next owner
        await writers.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        again = await client.prompt(sid, f"long answer tokens={TOKENS}", client_id="p1")
        stored = await client.list_all(sid)
        every = await client.stub.ListMessages(
            session_pb2.ListMessagesRequest(session_id=sid, all_branches=True, limit=100)
        )
        await assert_appends_kept(client, ledger)
    finally:
        await writers.cancel()
        await client.close()
    answer = stored[-1]
    versions = [m for m in every.messages if m.answer_seq == sent.answer_seq]
    if restart:
        # The new owner's model answered afresh: the stored beginning became a version.
        assert [v.answer_status for v in versions] == [
            common_pb2.ANSWER_STATUS_INTERRUPTED,
            common_pb2.ANSWER_STATUS_COMPLETED,
        ]
        interrupted = versions[0]
        assert interrupted.parent_seq == sent.user_message.seq == answer.parent_seq
        assert one_generation(interrupted.content) and interrupted.content.startswith("g1tok0 ")
        stored_batches = [interrupted.content]  # the batches the restart kept, joined
        expected = generation(2, TOKENS)
    else:
        assert len(versions) == 1
        expected = FULL
    for received in sent_by_dead_owner:
        assert received, "a watcher saw nothing before the kill"
        joined = "".join(received[offset] for offset in range(len(received)))
        assert "".join(stored_batches).startswith(joined), "a batch was sent but not stored"
        if not restart:
            for offset, text in received.items():
                assert stored_batches[offset] == text
    assert answer.content == expected
    assert answer.answer_status == common_pb2.ANSWER_STATUS_COMPLETED
    for watcher in watchers:
        assert watcher.resubscribed >= 1, "the kill did not break this watcher's stream"
        assert watcher.text == answer.content, "a watcher's text is not what is stored"
        assert watcher.final is not None and watcher.final.content == answer.content
        assert not watcher.refused, "a watcher showed two generations glued"
        assert [r.seq for r in watcher.restarts] == ([versions[0].seq] if restart else [])
    assert again.duplicate and again.answer_seq == sent.answer_seq
    calls = model_calls(two_pods)
    assert len(calls) == 2, calls
    # Tokens generated twice: with prefill, what the model wrote on the first call beyond where
    # the second started (the AI service counts those it had sent on; at most one batch, 32
    # chunks); with restart, all it had sent on (the new answer replaced them).
    first_written = eventually(
        lambda: [
            e["written"]
            for e in model_log(two_pods, "completion ended")
            if e["completion_id"] == calls[0]["completion_id"]
        ]
    )[0]
    regenerated = answer.usage.regenerated_tokens
    print(f"regenerated_tokens={regenerated}, model wrote {first_written} on call 1")
    if restart:
        assert calls[1]["start"] == 0 and calls[1]["generation"] == 2
        kept = len(versions[0].content.split())
        assert kept <= regenerated <= first_written, (kept, regenerated, first_written)
        eventually(lambda: '"answer restarted"' in two_pods.pods["pod-b"].log_path.read_text())
    else:
        assert 0 < calls[1]["start"] <= len(watchers[0].text.split())
        assert regenerated <= min(32, first_written - calls[1]["start"]), (
            regenerated,
            first_written,
        )
    eventually(lambda: '"answer resumed"' in two_pods.pods["pod-b"].log_path.read_text())


async def test_same_prompt_id_three_times_across_a_failover_makes_one_turn_and_one_model_call(
    two_pods,
):
    sid = next(s for s in (f"once-{i}" for i in range(50)) if HashRing(PODS).owner(s) == "pod-a")
    via_a = SessionClient(two_pods.pod_addrs["pod-a"])
    via_b = SessionClient(two_pods.pod_addrs["pod-b"])
    try:
        first = await via_a.prompt(sid, "hello tokens=5", client_id="same")
        watcher = GrpcWatcher(via_a, sid, first.answer_seq)
        await asyncio.wait_for(watcher.run(), 20)
        two_pods.pods["pod-a"].kill9()
        retries = [
            await retrying(lambda: via_b.prompt(sid, "hello tokens=5", client_id="same"))
            for _ in range(2)
        ]
        stored = await via_b.list_all(sid)
    finally:
        await via_a.close()
        await via_b.close()
    assert all(r.duplicate for r in retries)
    assert {(r.user_message.seq, r.answer_seq) for r in retries} == {
        (first.user_message.seq, first.answer_seq)
    }
    assert [(m.role, m.content) for m in stored] == [
        (common_pb2.ROLE_USER, "hello tokens=5"),
        (common_pb2.ROLE_ASSISTANT, "tok0 tok1 tok2 tok3 tok4"),
    ]
    assert len(model_calls(two_pods)) == 1
