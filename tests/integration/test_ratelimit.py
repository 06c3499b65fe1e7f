"""Token bucket limits on a real redis-server: refusals take nothing and say when to retry,
buckets refill, charges leave debts, take_all is all-or-nothing, idle buckets expire, and
concurrent takes never overdraw."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from common.ratelimit import Bucket, Limiter, bucket_key
from deploy.stack.processes import RedisServer
from deploy.stack.waits import async_eventually

SLOW = 0.001
"""Refill per second too slow to matter within a test."""


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def limiter(client: aioredis.Redis) -> Limiter:
    return Limiter(client)


async def test_empty_bucket_refuses_with_retry_after_for_the_cost(limiter):
    bucket = Bucket("burst", capacity=4, refill_per_s=0.5)
    taken = [await limiter.take(bucket, "user:ann") for _ in range(4)]
    refused = await limiter.take(bucket, "user:ann", cost=3)
    assert [d.allowed for d in taken] == [True] * 4
    assert [round(d.remaining) for d in taken] == [3, 2, 1, 0]
    assert not refused.allowed
    assert 0 <= refused.remaining < 0.5
    # 3 tokens at 0.5/s: 6000 ms, less what refilled since the bucket was emptied.
    assert 5000 <= refused.retry_after_ms <= 6000


async def test_refused_take_takes_nothing(limiter):
    bucket = Bucket("burst", capacity=10, refill_per_s=SLOW)
    assert (await limiter.take(bucket, "ip:10.0.0.7", cost=6)).allowed
    refused = await limiter.take(bucket, "ip:10.0.0.7", cost=5)
    rest = await limiter.take(bucket, "ip:10.0.0.7", cost=4)
    assert not refused.allowed
    assert refused.remaining == pytest.approx(4, abs=0.01)
    assert rest.allowed
    assert rest.remaining == pytest.approx(0, abs=0.01)


async def test_cost_above_capacity_never_passes(limiter, client):
    bucket = Bucket("burst", capacity=5, refill_per_s=1)
    with pytest.raises(ValueError, match="never passes"):
        await limiter.take(bucket, "user:ann", cost=6)
    assert await client.exists(bucket_key(bucket, "user:ann")) == 0


async def test_tokens_refill_over_time(limiter: Limiter):
    bucket = Bucket("fast", capacity=100, refill_per_s=1000)
    assert (await limiter.take(bucket, "user:ann", cost=100)).allowed
    refused = await limiter.take(bucket, "user:ann", cost=100)
    assert not refused.allowed
    assert 1 <= refused.retry_after_ms <= 100

    async def taken() -> bool:
        return (await limiter.take(bucket, "user:ann", cost=100)).allowed

    await async_eventually(taken, within=2, interval=0.002)


async def test_charge_leaves_a_debt_that_refuses_takes_until_repaid(limiter: Limiter):
    bucket = Bucket("model-tokens", capacity=100, refill_per_s=100)
    start = time.monotonic()
    charged = await limiter.charge(bucket, "user:ann", 150)
    refused = await limiter.take(bucket, "user:ann")
    assert charged.allowed
    assert charged.remaining == -50
    assert charged.retry_after_ms == 500
    assert not refused.allowed
    # The debt of 50 plus the 1 token asked for at 100/s, less what refilled meanwhile.
    assert 300 <= refused.retry_after_ms <= 510

    async def taken() -> bool:
        return (await limiter.take(bucket, "user:ann")).allowed

    await async_eventually(taken, within=3, interval=0.01)
    # Redis time between the charge and the successful take is at most our elapsed time.
    assert time.monotonic() - start >= 0.510


async def test_take_all_refuses_all_buckets_when_one_refuses(limiter):
    minute = Bucket("minute", capacity=10, refill_per_s=SLOW)
    day = Bucket("day", capacity=15, refill_per_s=SLOW)
    assert (await limiter.take_all([minute, day], "user:ann", cost=8)).allowed
    refused = await limiter.take_all([minute, day], "user:ann", cost=5)
    assert not refused.allowed
    assert refused.remaining == pytest.approx(2, abs=0.01)
    # The day bucket could have given 5 but gave nothing: all 7 of its tokens are still there.
    assert (await limiter.take(day, "user:ann", cost=7)).allowed
    assert (await limiter.take(minute, "user:ann", cost=2)).allowed


async def test_take_all_retry_after_is_the_longest_wait(limiter):
    minute = Bucket("minute", capacity=10, refill_per_s=10 / 60)
    day = Bucket("day", capacity=15, refill_per_s=15 / 86_400)
    assert (await limiter.take_all([minute, day], "user:ann", cost=8)).allowed
    refused = await limiter.take_all([minute, day], "user:ann", cost=9)
    assert not refused.allowed
    # minute lacks 7 tokens (42 s); day lacks 2 tokens (11 520 s).
    assert refused.retry_after_ms == pytest.approx(11_520_000, abs=1_000)


async def test_idle_bucket_expires_once_it_would_be_full(limiter, client):
    bucket = Bucket("minute", capacity=10, refill_per_s=0.5)
    await limiter.take(bucket, "user:ann", cost=4)
    await limiter.charge(bucket, "ip:10.0.0.7", 30)
    assert bucket_key(bucket, "user:ann") == "dc:rl:{user:ann}:minute"
    # 4 tokens to refill at 0.5/s; a debt of 20 plus a capacity of 10 at 0.5/s.
    assert 7_000 <= await client.pttl("dc:rl:{user:ann}:minute") <= 8_000
    assert 59_000 <= await client.pttl("dc:rl:{ip:10.0.0.7}:minute") <= 60_000


async def test_concurrent_takes_allow_exactly_the_capacity(limiter):
    bucket = Bucket("burst", capacity=10, refill_per_s=SLOW)
    decisions = await asyncio.gather(*(limiter.take(bucket, "ip:10.0.0.7") for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10
