"""CancelAnswer: stored before it is acknowledged, stops the model, never resumed after a crash."""

from __future__ import annotations

import grpc
import pytest

from deploy.stack.running import Stack
from durablechat.v1 import common_pb2, session_pb2
from tests.support.grpc_client import SessionClient, events_until


async def cancel(client: SessionClient, sid: str, answer_seq: int = 0):
    return await client.stub.CancelAnswer(
        session_pb2.CancelAnswerRequest(session_id=sid, answer_seq=answer_seq), timeout=10
    )


def model_calls(stack: Stack) -> int:
    assert stack.model is not None
    return stack.model.log_path.read_text().count('"completion requested"')


@pytest.fixture
async def slow(own_stack: Stack):
    own_stack.start_redis()
    own_stack.start_model(token_delay_ms=5)
    own_stack.start_ai()
    own_stack.start_session()
    client = SessionClient(own_stack.session_addr)
    try:
        yield own_stack, client
    finally:
        await client.close()


async def test_cancel_ends_the_answer_with_exactly_the_text_sent_and_nothing_after(
    slow, session_id
):
    _, client = slow
    stream = client.subscribe(session_id)
    await events_until(stream, "caught_up")
    sent = await client.prompt(session_id, "long tokens=2000")
    seen = await events_until(stream, "answer_delta", count=3)
    reply = await cancel(client, session_id)
    assert (reply.answer_seq, reply.cancelled) == (sent.answer_seq, True)
    rest = await events_until(stream, "answer_ended")
    stream.cancel()
    shown = "".join(
        e.answer_delta.text for e in seen + rest if e.WhichOneof("kind") == "answer_delta"
    )
    ended = rest[-1].answer_ended.message
    assert ended.answer_status == common_pb2.ANSWER_STATUS_CANCELLED
    assert ended.content == shown and len(shown.split()) < 2000
    stored = (await client.list_all(session_id))[-1]
    assert (stored.content, stored.answer_status) == (shown, common_pb2.ANSWER_STATUS_CANCELLED)
    again = await cancel(client, session_id, sent.answer_seq)
    assert not again.cancelled


@pytest.mark.chaos
async def test_cancelled_answer_is_never_resumed_after_kill9(slow, session_id):
    stack, client = slow
    stream = client.subscribe(session_id)
    await events_until(stream, "caught_up")
    await client.prompt(session_id, "long tokens=2000")
    await events_until(stream, "answer_delta", count=2)
    await cancel(client, session_id)
    stream.cancel()
    stack.session.kill9()
    stack.start_session()
    stored = await client.list_all(session_id)
    # A later prompt streams to completion, so anything the cancelled turn still had to say
    # would have come before it.
    follow = client.subscribe(session_id)
    await events_until(follow, "caught_up")
    await client.prompt(session_id, "next tokens=3")
    events = await events_until(follow, "answer_ended")
    follow.cancel()
    assert stored[-1].answer_status == common_pb2.ANSWER_STATUS_CANCELLED
    assert {e.seq for e in events if e.WhichOneof("kind") == "answer_delta"} == {events[1].seq}
    assert model_calls(stack) == 2  # the cancelled answer's, then the next prompt's


async def test_cancel_of_a_queued_answer_ends_it_without_a_model_call(slow, session_id):
    stack, client = slow
    first = await client.prompt(session_id, "long tokens=400")
    queued = await client.prompt(session_id, "queued tokens=5")
    reply = await cancel(client, session_id, queued.answer_seq)
    assert reply.cancelled
    stream = client.subscribe(session_id, after_seq=0)
    events = await events_until(stream, "answer_ended", count=2)
    stream.cancel()
    ends = {
        e.answer_ended.message.answer_seq: e.answer_ended.message
        for e in events
        if e.WhichOneof("kind") == "answer_ended"
    }
    assert ends[queued.answer_seq].answer_status == common_pb2.ANSWER_STATUS_CANCELLED
    assert ends[first.answer_seq].answer_status == common_pb2.ANSWER_STATUS_COMPLETED
    assert model_calls(stack) == 1


async def test_cancel_with_nothing_streaming_is_invalid_argument(slow, session_id):
    _, client = slow
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cancel(client, session_id)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no answer" in (err.value.details() or "")
