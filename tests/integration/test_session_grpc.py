"""The session service over real gRPC, against a real redis-server and the dev model."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from deploy.stack.running import Stack
from deploy.stack.waits import async_eventually
from durablechat.v1 import common_pb2, session_pb2
from tests.support.grpc_client import SessionClient, events_until


@pytest.fixture
async def client(core: Stack):
    c = SessionClient(core.session_addr)
    try:
        yield c
    finally:
        await c.close()


async def test_merge_patch_sets_nested_keys_and_null_deletes(client, session_id):
    await client.patch(session_id, '{"pendingMatch": {"tutor": {"id": 1}}, "step": "a"}')
    reply = await client.patch(session_id, '{"pendingMatch": {"score": 0.95}, "step": null}')
    session = await client.get(session_id)
    assert json.loads(session.state_json) == {"pendingMatch": {"tutor": {"id": 1}, "score": 0.95}}
    assert reply.version == session.version == 2


async def test_update_with_stale_expected_version_is_aborted_and_changes_nothing(
    client, session_id
):
    await client.patch(session_id, '{"a": 1}')
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.patch(session_id, '{"a": 2}', expected=0)
    assert err.value.code() == grpc.StatusCode.ABORTED
    reply = await client.patch(session_id, '{"b": 2}', expected=1)
    session = await client.get(session_id)
    assert reply.version == 2
    assert json.loads(session.state_json) == {"a": 1, "b": 2}


async def test_append_with_repeated_client_id_returns_original_seq(client, session_id):
    first = await client.append(session_id, "hello", client_id="m-1")
    again = await client.append(session_id, "hello (retry)", client_id="m-1")
    assert (again.duplicate, again.message.seq) == (True, first.message.seq)
    assert [m.content for m in await client.list_all(session_id)] == ["hello"]


async def test_concurrent_appends_get_gapless_seqs(client, session_id):
    replies = await asyncio.gather(*(client.append(session_id, f"m{i}") for i in range(50)))
    assert sorted(r.message.seq for r in replies) == list(range(1, 51))
    stored = await client.list_all(session_id)
    assert [m.seq for m in stored] == list(range(1, 51))
    assert {m.content for m in stored} == {f"m{i}" for i in range(50)}


async def test_list_messages_pages_by_after_seq(client, session_id):
    for i in range(5):
        await client.append(session_id, f"m{i}")
    page = await client.stub.ListMessages(
        session_pb2.ListMessagesRequest(session_id=session_id, after_seq=2, limit=2), timeout=5
    )
    assert [m.content for m in page.messages] == ["m2", "m3"]
    assert page.has_more and page.last_seq == 5


async def test_subscribe_from_seq_replays_the_rest_then_streams_live(client, session_id):
    for i in range(3):
        await client.append(session_id, f"m{i}")
    stream = client.subscribe(session_id, after_seq=1)
    replayed = await events_until(stream, "caught_up")
    assert [e.seq for e in replayed] == [2, 3, 3]
    await client.append(session_id, "live")
    live = await events_until(stream, "message_appended")
    assert [(e.seq, e.message_appended.message.content) for e in live] == [(4, "live")]
    stream.cancel()


async def test_state_change_event_carries_the_patch_not_the_state(client, session_id):
    await client.patch(session_id, json.dumps({"big": "x" * 1_000_000}))
    stream = client.subscribe(session_id)
    await events_until(stream, "caught_up")
    await client.patch(session_id, '{"flag": true}')
    (event,) = await events_until(stream, "state_changed")
    stream.cancel()
    assert event.state_changed.patch_json == '{"flag":true}'
    assert event.state_changed.version == 2
    assert event.ByteSize() < 200


async def test_prompt_streams_answer_to_subscribers_and_stores_it(client, session_id):
    stream = client.subscribe(session_id)
    await events_until(stream, "caught_up")
    sent = await client.prompt(session_id, "hello tokens=20")
    events = await events_until(stream, "answer_ended")
    stream.cancel()
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[:2] == ["message_appended", "answer_started"]
    assert kinds[-1] == "answer_ended"
    deltas = [e for e in events if e.WhichOneof("kind") == "answer_delta"]
    assert [d.offset for d in deltas] == list(range(len(deltas)))
    text = "".join(d.answer_delta.text for d in deltas)
    expected = " ".join(f"tok{i}" for i in range(20))
    assert text == expected
    ended = events[-1].answer_ended.message
    assert (ended.content, ended.answer_seq) == (expected, sent.answer_seq)
    assert ended.answer_status == common_pb2.ANSWER_STATUS_COMPLETED
    stored = await client.list_all(session_id)
    assert [(m.role, m.content) for m in stored] == [
        (common_pb2.ROLE_USER, "hello tokens=20"),
        (common_pb2.ROLE_ASSISTANT, expected),
    ]
    assert ended.usage.completion_tokens == stored[1].usage.completion_tokens == 20
    assert ended.usage.prompt_tokens == 2  # the dev model counts words
    assert (await client.get(session_id)).usage.completion_tokens == 20


async def test_usage_is_summed_per_user_over_sessions(client, session_id):
    user = f"user-{session_id}"
    for sid, tokens in ((f"{session_id}-a", 4), (f"{session_id}-b", 6)):
        stream = client.subscribe(sid)
        await events_until(stream, "caught_up")
        await client.prompt(sid, f"count tokens={tokens}", user=user)
        await events_until(stream, "answer_ended")
        stream.cancel()
    request = session_pb2.GetUserUsageRequest(user=user)

    async def counted() -> session_pb2.GetUserUsageResponse | None:
        reply = await client.stub.GetUserUsage(request, timeout=10)
        return reply if reply.answers == 2 else None

    totals = await async_eventually(counted)  # added just after each answer's end is stored
    assert (totals.usage.prompt_tokens, totals.usage.completion_tokens) == (4, 10)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.stub.GetUserUsage(session_pb2.GetUserUsageRequest(user=""), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_repeated_prompt_id_starts_no_second_answer(client, session_id):
    first = await client.prompt(session_id, "hi tokens=3", client_id="p-1")
    again = await client.prompt(session_id, "hi tokens=3", client_id="p-1")
    assert again.duplicate
    assert (again.user_message.seq, again.answer_seq) == (first.user_message.seq, first.answer_seq)
    stream = client.subscribe(session_id, after_seq=0)
    events = await events_until(stream, "answer_ended")
    stream.cancel()
    assert sum(e.WhichOneof("kind") == "answer_started" for e in events) == 1


async def test_resume_mid_answer_from_cursor_has_no_gap_and_no_duplicate(client, session_id):
    stream = client.subscribe(session_id)
    await events_until(stream, "caught_up")
    await client.prompt(session_id, "long tokens=400")
    seen: list[str] = []
    cursor = (0, 0)
    async for reply in stream:
        e = reply.event
        kind = e.WhichOneof("kind")
        if kind == "answer_delta":
            seen.append(e.answer_delta.text)
            cursor = (cursor[0], e.offset + 1)
            if len(seen) == 3:
                break
        else:
            cursor = (e.seq, 0 if kind == "answer_ended" else cursor[1])
    stream.cancel()
    resumed = client.subscribe(session_id, after_seq=cursor[0], after_offset=cursor[1])
    rest = await events_until(resumed, "answer_ended")
    resumed.cancel()
    seen += [e.answer_delta.text for e in rest if e.WhichOneof("kind") == "answer_delta"]
    final = rest[-1].answer_ended.message.content
    assert "".join(seen) == final == " ".join(f"tok{i}" for i in range(400))


BAD_REQUESTS = [
    pytest.param("GetSession", {"session_id": "bad id!"}, id="session-id-with-space"),
    pytest.param("GetSession", {"session_id": ""}, id="empty-session-id"),
    pytest.param("GetSession", {"session_id": "x" * 129}, id="session-id-too-long"),
    pytest.param("GetSession", {"session_id": "a{b}"}, id="session-id-with-hash-tag"),
    pytest.param("AppendMessage", {"role": 1, "content": "  "}, id="blank-content"),
    pytest.param("AppendMessage", {"role": 1, "content": "x" * 70_000}, id="oversized-content"),
    pytest.param("AppendMessage", {"role": 0, "content": "hi"}, id="unspecified-role"),
    pytest.param("AppendMessage", {"role": 9, "content": "hi"}, id="unknown-role"),
    pytest.param("UpdateState", {"patch_json": "{nope"}, id="invalid-json"),
    pytest.param("UpdateState", {"patch_json": "[1, 2]"}, id="non-object-state"),
    pytest.param("UpdateState", {"patch_json": '{"a": NaN}'}, id="nan-in-json"),
    pytest.param("UpdateState", {"patch_json": "[" * 100_000}, id="deeply-nested-json"),
    pytest.param(
        "UpdateState", {"patch_json": '{"a": "%s"}' % ("x" * 2_200_000)}, id="oversized-state"
    ),
    pytest.param("ListMessages", {"limit": 100_000}, id="page-too-large"),
    pytest.param("SendPrompt", {"content": ""}, id="empty-prompt"),
]


@pytest.mark.parametrize(("method", "fields"), BAD_REQUESTS)
async def test_bad_input_is_invalid_argument_and_stores_nothing(client, session_id, method, fields):
    await client.append(session_id, "keep me")
    await client.patch(session_id, '{"keep": 1}')
    request_type = getattr(session_pb2, f"{method}Request")
    request = request_type(**{"session_id": session_id, **fields})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(client.stub, method)(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details()
    session = await client.get(session_id)
    assert (session.last_seq, json.loads(session.state_json)) == (2, {"keep": 1})


async def test_unknown_fields_are_invalid_argument(client, session_id):
    request = session_pb2.GetSessionRequest(session_id=session_id).SerializeToString()
    request += b"\xa0\x06\x01"  # field 100, varint 1: unknown to the server
    call = client.channel.unary_unary("/durablechat.v1.SessionService/GetSession")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(request, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
