"""session_service/store/group_commit.py against a real redis-server: concurrent calls share
round trips and each gets exactly the reply or error it would get alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from deploy.stack.processes import RedisServer
from session_service.store.group_commit import GroupCommit
from session_service.store.redis_client import REDIS_ERRORS, close, connect

COUNTER = """
if ARGV[1] == 'fail' then return redis.error_reply('refused ' .. KEYS[1]) end
redis.call('RPUSH', KEYS[1], ARGV[1])
return {redis.call('LLEN', KEYS[1]), ARGV[1]}
"""
CALLS = 300


@dataclass
class Grouped:
    client: Any
    group: GroupCommit
    script: AsyncScript

    async def run(self, key: str, value: str) -> Any:
        return await self.group.run(self.script, [key], [value])


@pytest.fixture
async def grouped(redis_server: RedisServer) -> AsyncIterator[Grouped]:
    client = connect(redis_server.url, timeout_ms=2000, cluster=False)
    try:
        yield Grouped(client, GroupCommit(client), client.register_script(COUNTER))
    finally:
        await close(client)


async def test_concurrent_calls_share_round_trips_and_each_gets_its_own_reply(
    grouped: Grouped,
) -> None:
    replies = await asyncio.gather(
        *(grouped.run(f"list-{i % 7}", f"item-{i}") for i in range(CALLS))
    )
    stored = {k: await grouped.client.lrange(f"list-{k}", 0, -1) for k in range(7)}

    # Each reply is the one its own call produced: the item it pushed, at its list's length.
    for i, (length, item) in enumerate(replies):
        assert item == f"item-{i}".encode()
        assert stored[i % 7][length - 1] == item
    assert sum(len(items) for items in stored.values()) == CALLS  # each ran exactly once
    assert 1 <= grouped.group.round_trips < CALLS / 4


async def test_one_call_alone_goes_at_once_in_a_round_trip_of_its_own(grouped: Grouped) -> None:
    assert await grouped.run("alone", "x") == [1, b"x"]
    assert await grouped.run("alone", "y") == [2, b"y"]
    assert grouped.group.round_trips == 2


async def test_an_error_fails_only_its_own_call(grouped: Grouped) -> None:
    results = await asyncio.gather(
        grouped.run("a", "one"),
        grouped.run("b", "fail"),
        grouped.run("a", "two"),
        return_exceptions=True,
    )

    assert results[0] == [1, b"one"]
    assert isinstance(results[1], ResponseError)
    assert "refused b" in str(results[1])
    assert results[2] == [2, b"two"]


async def test_a_script_redis_lost_is_loaded_and_run_once(grouped: Grouped) -> None:
    await grouped.run("kept", "before")
    await grouped.client.script_flush()  # as after a Redis restart: every script unknown
    replies = await asyncio.gather(*(grouped.run("kept", f"n{i}") for i in range(20)))
    stored = await grouped.client.lrange("kept", 0, -1)

    assert sorted(item for _, item in replies) == sorted(f"n{i}".encode() for i in range(20))
    assert len(stored) == 21 and len(set(stored)) == 21  # each ran exactly once


async def test_redis_gone_fails_every_waiting_call_with_a_redis_error(
    grouped: Grouped, redis_server: RedisServer
) -> None:
    await grouped.run("x", "warm")
    redis_server.stop()
    results = await asyncio.wait_for(
        asyncio.gather(*(grouped.run("x", f"v{i}") for i in range(10)), return_exceptions=True),
        timeout=10,
    )

    assert all(isinstance(result, REDIS_ERRORS) for result in results), results


@pytest.mark.parametrize("cancelled_at", [0, 5])
async def test_a_cancelled_caller_leaves_the_others_answered(
    grouped: Grouped, cancelled_at: int
) -> None:
    calls = [asyncio.ensure_future(grouped.run("c", f"v{i}")) for i in range(10)]
    calls[cancelled_at].cancel()
    results: list[Any] = await asyncio.gather(*calls, return_exceptions=True)

    assert isinstance(results[cancelled_at], asyncio.CancelledError)
    others = [r for i, r in enumerate(results) if i != cancelled_at]
    assert sorted(item for _, item in others) == sorted(
        f"v{i}".encode() for i in range(10) if i != cancelled_at
    )
