"""Model faults during an answer: retried where safe (continuing from the stored text), else a
clear FAILED answer; never a hang, never a duplicated or missing token."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from deploy.stack.running import Stack
from deploy.stack.waits import eventually
from durablechat.v1 import common_pb2
from session_service.actor.answering import RETRY_FIRST_S
from tests.support.fakes.openai_server import FakeOpenAI
from tests.support.grpc_client import SessionClient, events_until

FULL = " ".join(f"tok{i}" for i in range(20))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(tokens=20, delay_ms=1) as server:
        yield server


@pytest.fixture(scope="module")
def faulty_stack(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("faulty"))
    try:
        stack.start_redis()
        stack.model_url = fake.url
        stack.start_ai()
        stack.start_session()
        yield stack
    finally:
        stack.close()


@pytest.fixture
async def client(faulty_stack: Stack, fake: FakeOpenAI):
    fake.reset()
    c = SessionClient(faulty_stack.session_addr)
    try:
        yield c
    finally:
        await c.close()


async def answer(client: SessionClient, sid: str) -> tuple[str, common_pb2.Message, str]:
    """Prompts and follows the answer: (text the subscriber saw, stored message, error)."""
    stream = client.subscribe(sid)
    await events_until(stream, "caught_up")
    await client.prompt(sid, "hello")
    events = await events_until(stream, "answer_ended")
    stream.cancel()
    shown = "".join(e.answer_delta.text for e in events if e.WhichOneof("kind") == "answer_delta")
    return shown, events[-1].answer_ended.message, events[-1].answer_ended.error


async def test_cut_stream_is_continued_from_the_stored_text(client, fake, faulty_stack, session_id):
    fake.cut_stream_after(7)
    shown, message, _ = await answer(client, session_id)
    assert shown == message.content == FULL
    assert message.answer_status == common_pb2.ANSWER_STATUS_COMPLETED
    assert len(fake.requests) == 2
    resumed = fake.requests[1]["messages"][-1]
    assert resumed["role"] == "assistant" and FULL.startswith(resumed["content"])
    log = faulty_stack.session.log_path
    finished = eventually(  # logged just after the end is published
        lambda: [
            json.loads(line)
            for line in log.read_text().splitlines()
            if '"answer finished"' in line and f'"{session_id}"' in line
        ]
    )
    assert finished[-1]["model_calls"] == 2 and finished[-1]["resumes"] == 1
    assert finished[-1]["ttft_ms"] > 0 and finished[-1]["completion_tokens"] > 0
    # The backoff before the second call is the longest wait clients saw between batches.
    assert finished[-1]["max_gap_ms"] >= 1000 * RETRY_FIRST_S / 2
    # Every chunk sent before the cut was stored, so nothing was generated twice.
    assert finished[-1]["regenerated_tokens"] == message.usage.regenerated_tokens == 0


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_transient_model_errors_are_retried(client, fake, session_id, status):
    fake.fail_next_with(status)
    fake.fail_next_with(status)
    shown, message, _ = await answer(client, session_id)
    assert shown == message.content == FULL
    assert len(fake.requests) == 3


async def test_a_request_the_model_refuses_fails_at_once_with_its_reason(client, fake, session_id):
    fake.fail_next_with(400)
    shown, message, error = await answer(client, session_id)
    assert message.answer_status == common_pb2.ANSWER_STATUS_FAILED
    assert shown == message.content == ""
    assert "INVALID_ARGUMENT" in error
    assert len(fake.requests) == 1


async def test_retries_stop_after_the_configured_count(client, fake, session_id):
    for _ in range(4):
        fake.fail_next_with(429)
    _, message, error = await answer(client, session_id)
    assert message.answer_status == common_pb2.ANSWER_STATUS_FAILED
    assert "RESOURCE_EXHAUSTED" in error
    assert len(fake.requests) == 4  # the first call and ANSWER_RETRIES=3 retries


async def test_cut_stream_with_a_model_that_restarts_replaces_the_answer(own_stack, session_id):
    with FakeOpenAI(tokens=20, delay_ms=1) as fake:
        own_stack.start_redis()
        own_stack.model_url = fake.url
        own_stack.start_ai(ANSWER_CONTINUE="restart")
        own_stack.start_session()
        fake.cut_stream_after(7)
        client = SessionClient(own_stack.session_addr)
        try:
            stream = client.subscribe(session_id)
            await events_until(stream, "caught_up")
            await client.prompt(session_id, "hello")
            events = await events_until(stream, "answer_ended")
            stream.cancel()
        finally:
            await client.close()
        requests = list(fake.requests)
    shown, replaced = "", []
    for e in events:
        if e.WhichOneof("kind") == "answer_delta":
            shown += e.answer_delta.text
        elif e.WhichOneof("kind") == "answer_restarted":
            replaced.append(e.answer_restarted.interrupted)
            shown = ""
    message = events[-1].answer_ended.message
    assert shown == message.content == FULL
    assert [m.answer_status for m in replaced] == [common_pb2.ANSWER_STATUS_INTERRUPTED]
    assert replaced[0].content and FULL.startswith(replaced[0].content)
    # The retry asked the original request again, without the stored text.
    assert [r["messages"][-1]["role"] for r in requests] == ["user", "user"]
    assert message.usage.regenerated_tokens >= len(replaced[0].content.split())
