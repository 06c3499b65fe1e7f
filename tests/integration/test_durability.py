"""Acknowledged writes survive kill -9 of the session service and of Redis; Redis down is a
clear UNAVAILABLE, never a hang; idle sessions leave memory and reload."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest

from deploy.stack.running import Stack
from deploy.stack.waits import async_eventually, eventually
from durablechat.v1 import common_pb2
from tests.support.grpc_client import SessionClient, events_until

pytestmark = pytest.mark.chaos

N = 200


async def append_many(client: SessionClient, sid: str, n: int) -> list[int]:
    """Appends n messages, 20 in flight; returns the acknowledged seqs."""
    acked: list[int] = []
    for start in range(0, n, 20):
        replies = await asyncio.gather(
            *(client.append(sid, f"m{i}") for i in range(start, min(n, start + 20)))
        )
        acked += [r.message.seq for r in replies]
    return acked


@pytest.fixture
def grpc_stack(own_stack: Stack) -> Stack:
    own_stack.start_redis()
    own_stack.start_model()
    own_stack.start_ai()
    own_stack.start_session()
    return own_stack


async def test_acknowledged_appends_survive_kill9_of_session_service(grpc_stack, session_id):
    client = SessionClient(grpc_stack.session_addr)
    try:
        acked = await append_many(client, session_id, N)
        await client.patch(session_id, '{"step": "booking"}')
        grpc_stack.session.kill9()
        grpc_stack.start_session()
        stored = await client.list_all(session_id)
        session = await client.get(session_id)
    finally:
        await client.close()
    assert [m.seq for m in stored] == sorted(acked) == list(range(1, N + 1))
    assert json.loads(session.state_json) == {"step": "booking"}
    assert session.epoch == 2


async def test_acknowledged_appends_survive_kill9_of_redis(grpc_stack, session_id):
    client = SessionClient(grpc_stack.session_addr)
    try:
        acked = await append_many(client, session_id, N)
        grpc_stack.redis.kill9()
        grpc_stack.redis.start()  # same port, same data directory: replays the AOF
        stored = await async_eventually(lambda: client.list_all(session_id))
    finally:
        await client.close()
    assert [m.seq for m in stored] == sorted(acked) == list(range(1, N + 1))


async def test_redis_down_gives_unavailable_within_the_timeout(grpc_stack, session_id):
    client = SessionClient(grpc_stack.session_addr)
    try:
        await client.append(session_id, "before")
        grpc_stack.redis.kill9()
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.append(session_id, "during")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 5
        grpc_stack.redis.start()
        await async_eventually(lambda: client.append(session_id, "after"))
        contents = [m.content for m in await client.list_all(session_id)]
    finally:
        await client.close()
    assert contents == ["before", "after"]


async def test_owner_killed_mid_answer_is_interrupted_keeping_stored_text_when_configured(
    own_stack, session_id
):
    own_stack.start_redis()
    own_stack.start_model(token_delay_ms=20)
    own_stack.start_ai()
    own_stack.start_session(ON_OWNER_LOSS="interrupt")
    client = SessionClient(own_stack.session_addr)
    try:
        stream = client.subscribe(session_id)
        await events_until(stream, "caught_up")
        await client.prompt(session_id, "slow tokens=500")
        await events_until(stream, "answer_delta")
        own_stack.session.kill9()
        stream.cancel()
        own_stack.start_session(ON_OWNER_LOSS="interrupt")
        stored = await client.list_all(session_id)
    finally:
        await client.close()
    assert [m.role for m in stored] == [common_pb2.ROLE_USER, common_pb2.ROLE_ASSISTANT]
    assert stored[1].answer_status == common_pb2.ANSWER_STATUS_INTERRUPTED
    full = " ".join(f"tok{i}" for i in range(500))
    assert stored[1].content and full.startswith(stored[1].content)


async def test_idle_session_leaves_memory_and_reloads_intact(own_stack, session_id):
    own_stack.start_redis()
    own_stack.start_session(SESSION_IDLE_MS="200")
    client = SessionClient(own_stack.session_addr)
    try:
        await client.append(session_id, "remember me")
        await client.patch(session_id, '{"k": "v"}')
        log = own_stack.session.log_path
        eventually(
            lambda: any(
                entry.get("msg") == "session passivated" and entry.get("session_id") == session_id
                for entry in map(json.loads, log.read_text().splitlines())
            )
        )
        session = await client.get(session_id)
        stored = await client.list_all(session_id)
    finally:
        await client.close()
    assert session.epoch == 2  # a second activation took the session over from Redis
    assert json.loads(session.state_json) == {"k": "v"}
    assert [m.content for m in stored] == ["remember me"]
