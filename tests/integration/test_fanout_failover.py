"""The gRPC fan-out across a kill -9 of the owner mid-answer: the gateway's feed resubscribes to
the next owner from its cursor, and every stream through it goes on unbroken to the whole
answer, each batch once, in order, while the owner pod served one stream for all of them."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from common.ring import HashRing
from deploy.stack.running import Stack
from durablechat.v1 import cluster_pb2, cluster_pb2_grpc, common_pb2
from tests.support.crash import Writers, assert_appends_kept, grpc_append, grpc_retryable
from tests.support.generations import KINDS, Shown, generation
from tests.support.grpc_client import SessionClient
from tests.support.ledger import Ledger

pytestmark = pytest.mark.chaos

PODS = ["pod-a", "pod-b"]
TOKENS = 1000


async def follow(
    client: SessionClient, sid: str, answer_seq: int, halfway: asyncio.Event, breaks: list[int]
) -> str:
    """The answer's text from one fan-out stream, checking every batch comes once, in order,
    and the text shown is never two generations glued (a restart replaces it); a stream the
    fan-out ended is counted in `breaks` and resumed from its cursor."""
    shown, cursor = Shown(), (0, 0)
    while True:
        stream = client.subscribe(sid, after_seq=cursor[0], after_offset=cursor[1])
        try:
            async for reply in stream:
                event = reply.event
                kind = event.WhichOneof("kind")
                if kind == "answer_delta":
                    assert event.offset == cursor[1], "a batch arrived twice or one is missing"
                    shown.append(event.answer_delta.text)
                    assert not shown.glued, "two generations glued"
                    cursor = (cursor[0], event.offset + 1)
                    if len(shown.text.split()) >= 300:
                        halfway.set()
                elif kind == "caught_up":
                    cursor = (event.seq, event.offset)
                elif kind == "answer_restarted":
                    assert event.answer_restarted.interrupted.content == shown.text
                    shown.replace()
                    cursor = (event.seq, 0)
                elif kind == "answer_ended":
                    cursor = (event.seq, 0)
                    if event.answer_ended.message.answer_seq == answer_seq:
                        assert event.answer_ended.message.content == shown.text
                        return shown.text
                else:
                    cursor = (event.seq, cursor[1])
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            breaks.append(1)
        finally:
            stream.cancel()


async def owner_streams(stack: Stack, pod: str, sid: str) -> int:
    async with grpc.aio.insecure_channel(stack.pod_addrs[pod]) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        request = cluster_pb2.GetPodStatusRequest(session_id=sid)
        reply = await stub.GetPodStatus(request, metadata=stack.cluster_metadata, timeout=10)
        return reply.session_subscribers


@pytest.mark.parametrize(("model_env", "ai_env"), KINDS)
async def test_fanout_streams_get_the_whole_answer_across_a_kill9_of_the_owner(
    own_stack: Stack, model_env: dict[str, str], ai_env: dict[str, str]
) -> None:
    own_stack.start_redis()
    own_stack.start_model(token_delay_ms=3, **model_env)
    own_stack.start_ai(**ai_env)
    for pod in PODS:
        own_stack.start_pod(pod)
    own_stack.wait_members()
    own_stack.start_gateway()
    sid = next(s for s in (f"fo-{i}" for i in range(50)) if HashRing(PODS).owner(s) == "pod-a")
    pod_b = SessionClient(own_stack.pod_addrs["pod-b"])
    fanout = SessionClient(own_stack.fanout_addr)
    # Writers on two more of pod-a's sessions: the kill lands while they are mid-call too.
    ledger = Ledger()
    others = [s for s in (f"fo-w{i}" for i in range(50)) if HashRing(PODS).owner(s) == "pod-a"]
    writers = Writers(ledger, grpc_append(lambda: pod_b), others[:2], grpc_retryable)
    try:
        await pod_b.append(sid, "warm up")
        halfway = asyncio.Event()
        breaks: list[int] = []
        sent = await pod_b.prompt(sid, f"long answer tokens={TOKENS}", client_id="p1")
        tasks = [
            asyncio.create_task(follow(fanout, sid, sent.answer_seq, halfway, breaks))
            for _ in range(5)
        ]
        await asyncio.wait_for(halfway.wait(), 30)
        assert await owner_streams(own_stack, "pod-a", sid) == 1
        writers.start()
        await writers.mid_call(2)
        own_stack.pods["pod-a"].kill9()
        await writers.acked(ledger.count() + 10)  # on the next owner
        await writers.stop()
        texts = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        stored = await pod_b.list_all(sid)
        await assert_appends_kept(pod_b, ledger)
    finally:
        await writers.cancel()
        await pod_b.close()
        await fanout.close()
    full = generation(2 if ai_env else 0, TOKENS)
    assert stored[-1].content == full
    assert stored[-1].answer_status == common_pb2.ANSWER_STATUS_COMPLETED
    assert texts == [full] * 5
    assert breaks == [], "the fan-out ended a stream instead of following the next owner"
