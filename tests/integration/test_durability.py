"""Acknowledged writes survive kill -9 of the session service and of Redis, landing at a random
moment (seed printed) while several writers are mid-call, each write checked by content
(tests/support/ledger.py); Redis down is a clear UNAVAILABLE, never a hang; idle sessions leave
memory and reload."""

from __future__ import annotations

import json
import time
from functools import partial

import grpc
import pytest
import redis

from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, start
from deploy.stack.waits import async_eventually, eventually
from durablechat.v1 import common_pb2
from session_service.store.keys import lease_key
from tests.support.crash import (
    Writers,
    assert_appends_kept,
    grpc_append,
    grpc_retryable,
    kill_and_restart,
)
from tests.support.grpc_client import SessionClient, events_until
from tests.support.ledger import Ledger

pytestmark = pytest.mark.chaos

SESSIONS = 3
"""Sessions the writers spread over (several writers per session: concurrent appends)."""


@pytest.fixture
def grpc_stack(own_stack: Stack) -> Stack:
    own_stack.start_redis()
    own_stack.start_model()
    own_stack.start_ai()
    own_stack.start_session()
    return own_stack


def writers_on(client: SessionClient, session_id: str, ledger: Ledger) -> Writers:
    sessions = [f"{session_id}-{i}" for i in range(SESSIONS)]
    return Writers(ledger, grpc_append(lambda: client), sessions, grpc_retryable)


async def test_acknowledged_appends_survive_kill9_of_session_service(grpc_stack, session_id):
    """kill -9 at a random moment with six writers mid-call; the restarted service has every
    acknowledged write once, byte for byte, at its seq, and the state patched before."""
    client = SessionClient(grpc_stack.session_addr)
    ledger = Ledger()
    writers = writers_on(client, session_id, ledger)
    try:
        await client.patch(f"{session_id}-state", '{"step": "booking"}')
        kill, restart = grpc_stack.session.kill9, grpc_stack.start_session
        await kill_and_restart(writers, "session kill -9", kill, restart)
        checked = await assert_appends_kept(client, ledger)
        session = await client.get(f"{session_id}-state")
    finally:
        await client.close()
    assert json.loads(session.state_json) == {"step": "booking"}
    assert session.epoch == 2
    print(f"{checked} acknowledged writes kept, {writers.retries} retries")


async def test_acknowledged_appends_survive_kill9_of_redis(grpc_stack, session_id):
    """kill -9 of redis-server at a random moment with six writers mid-call, then a restart on
    the same data directory (it replays its AOF): every acknowledged write is there once."""
    assert grpc_stack.redis is not None
    client = SessionClient(grpc_stack.session_addr)
    ledger = Ledger()
    writers = writers_on(client, session_id, ledger)
    try:
        redis_server = grpc_stack.redis  # restarted on the same port and data directory
        await kill_and_restart(writers, "redis kill -9", redis_server.kill9, redis_server.start)
        checked = await assert_appends_kept(client, ledger)
    finally:
        await client.close()
    print(f"{checked} acknowledged writes kept, {writers.retries} retries")


async def test_acknowledged_appends_survive_kill9_of_a_redis_cluster_master(
    own_stack: Stack, session_id: str
) -> None:
    """The same on a 3-master Redis Cluster: kill -9 of the master holding the first session
    while six writers are mid-call, restarted on its port and directory (it replays its AOF
    and rejoins with its slots)."""
    start(own_stack, StackSpec(redis_cluster=3, model=False, ai=False, gateway=False))
    nodes = own_stack.redis_cluster
    assert nodes is not None
    client = SessionClient(own_stack.session_addr)
    ledger = Ledger()
    writers = writers_on(client, session_id, ledger)
    with redis.RedisCluster.from_url(nodes.url) as cluster:
        port = cluster.get_node_from_key(lease_key(writers.sessions[0])).port
    master = nodes.ports.index(port)
    try:
        kill, restart = partial(nodes.kill9, master), partial(nodes.restart, master)
        await kill_and_restart(writers, "redis master kill -9", kill, restart)
        checked = await assert_appends_kept(client, ledger)
    finally:
        await client.close()
    print(f"{checked} acknowledged writes kept, {writers.retries} retries")


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
