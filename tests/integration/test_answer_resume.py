"""An answer survives the death of its owner: batches are stored before anyone sees them, the
next owner continues from the stored text, and every subscriber ends with the same text."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest

from common.ring import HashRing
from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from durablechat.v1 import common_pb2
from session_service.store.keys import answer_key
from tests.support.crash import Writers, assert_appends_kept, grpc_append, grpc_retryable
from tests.support.grpc_client import SessionClient, retrying
from tests.support.ledger import Ledger

pytestmark = pytest.mark.chaos

PODS = ["pod-a", "pod-b"]
TOKENS = 1000
FULL = " ".join(f"tok{i}" for i in range(TOKENS))


class Watcher:
    """A subscriber that keeps the resume cursor and resubscribes whenever its stream breaks."""

    def __init__(self, client: SessionClient, sid: str) -> None:
        self.client, self.sid = client, sid
        self.text = ""
        self.final: common_pb2.Message | None = None
        self.cursor: tuple[int, int] = (0, 0)
        self.resubscribed = 0
        self.reached_300 = asyncio.Event()
        self.batches: dict[int, str] = {}
        """Every batch received, by offset."""

    async def run(self, answer_seq: int) -> None:
        while self.final is None:
            stream = self.client.subscribe(
                self.sid, after_seq=self.cursor[0], after_offset=self.cursor[1]
            )
            try:
                async for reply in stream:
                    self.take(reply.event, answer_seq)
                    if self.final is not None:
                        break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                self.resubscribed += 1
                await asyncio.sleep(0.05)  # resubscribe backoff
            finally:
                stream.cancel()

    def take(self, event, answer_seq: int) -> None:
        kind = event.WhichOneof("kind")
        if kind == "answer_delta":
            assert event.offset == self.cursor[1], "a batch arrived twice or one is missing"
            self.batches[event.offset] = event.answer_delta.text
            self.text += event.answer_delta.text
            self.cursor = (self.cursor[0], event.offset + 1)
            if len(self.text.split()) >= 300:
                self.reached_300.set()
        elif kind == "caught_up":
            self.cursor = (event.seq, event.offset)
        else:
            ended = kind == "answer_ended"
            self.cursor = (event.seq, 0 if ended else self.cursor[1])
            if ended and event.answer_ended.message.answer_seq == answer_seq:
                self.final = event.answer_ended.message


@pytest.fixture
def two_pods(own_stack: Stack) -> Stack:
    own_stack.start_redis()
    own_stack.start_model(token_delay_ms=3)
    own_stack.start_ai()
    for pod in PODS:
        own_stack.start_pod(pod)
    return own_stack


def model_log(stack: Stack, msg: str) -> list[dict[str, Any]]:
    assert stack.model is not None
    return [
        json.loads(line)
        for line in stack.model.log_path.read_text().splitlines()
        if f'"{msg}"' in line
    ]


def model_calls(stack: Stack) -> list[dict[str, Any]]:
    return model_log(stack, "completion requested")


async def test_answer_continues_on_another_pod_after_kill9_with_no_gap_or_duplicate(two_pods):
    sid = next(s for s in (f"ans-{i}" for i in range(50)) if HashRing(PODS).owner(s) == "pod-a")
    client = SessionClient(two_pods.pod_addrs["pod-b"])
    # Writers on two more of pod-a's sessions: the kill lands while they are mid-call too.
    ledger = Ledger()
    others = [s for s in (f"ans-w{i}" for i in range(50)) if HashRing(PODS).owner(s) == "pod-a"]
    writers = Writers(ledger, grpc_append(lambda: client), others[:2], grpc_retryable)
    try:
        await client.append(sid, "warm up")
        watchers = [Watcher(client, sid) for _ in range(3)]
        sent = await client.prompt(sid, f"long answer tokens={TOKENS}", client_id="p1")
        tasks = [asyncio.create_task(w.run(sent.answer_seq)) for w in watchers]

        await asyncio.wait_for(watchers[0].reached_300.wait(), 30)
        writers.start()
        await writers.mid_call(2)
        two_pods.pods["pod-a"].kill9()
        # What the dead owner sent: every batch of it must be in Redis, at its offset.
        sent_by_dead_owner = [dict(w.batches) for w in watchers]
        assert two_pods.redis is not None
        with two_pods.redis.client() as redis_client:
            stored_batches = redis_client.lrange(answer_key(sid, sent.answer_seq), 0, -1)
        for received in sent_by_dead_owner:
            assert received, "a watcher saw nothing before the kill"
            for offset, text in received.items():
                assert offset < len(stored_batches), f"batch {offset} was sent but not stored"
                assert stored_batches[offset] == text
        await writers.acked(ledger.count() + 10)  # on the next owner
        await writers.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        again = await client.prompt(sid, f"long answer tokens={TOKENS}", client_id="p1")
        stored = await client.list_all(sid)
        await assert_appends_kept(client, ledger)
    finally:
        await writers.cancel()
        await client.close()
    answer = stored[-1]
    assert answer.content == FULL
    assert answer.answer_status == common_pb2.ANSWER_STATUS_COMPLETED
    for watcher in watchers:
        assert watcher.resubscribed >= 1, "the kill did not break this watcher's stream"
        assert watcher.text == FULL, "a watcher saw a gap or a duplicate"
        assert watcher.final is not None and watcher.final.content == FULL
    assert again.duplicate and again.answer_seq == sent.answer_seq
    calls = model_calls(two_pods)
    assert len(calls) == 2, calls
    assert 0 < calls[1]["start"] <= len(watchers[0].text.split())
    # Tokens generated twice: what the model wrote on the first call beyond where the second
    # started. The AI service counts those it had sent on; at most one batch (32 chunks).
    first_written = eventually(
        lambda: [
            e["written"]
            for e in model_log(two_pods, "completion ended")
            if e["completion_id"] == calls[0]["completion_id"]
        ]
    )[0]
    regenerated = answer.usage.regenerated_tokens
    print(f"regenerated_tokens={regenerated}, model wrote {first_written} on call 1")
    assert regenerated <= min(32, first_written - calls[1]["start"]), (regenerated, first_written)
    eventually(lambda: '"answer resumed"' in two_pods.pods["pod-b"].log_path.read_text())


async def test_same_prompt_id_three_times_across_a_failover_makes_one_turn_and_one_model_call(
    two_pods,
):
    sid = next(s for s in (f"once-{i}" for i in range(50)) if HashRing(PODS).owner(s) == "pod-a")
    via_a = SessionClient(two_pods.pod_addrs["pod-a"])
    via_b = SessionClient(two_pods.pod_addrs["pod-b"])
    try:
        first = await via_a.prompt(sid, "hello tokens=5", client_id="same")
        watcher = Watcher(via_a, sid)
        await asyncio.wait_for(watcher.run(first.answer_seq), 20)
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
