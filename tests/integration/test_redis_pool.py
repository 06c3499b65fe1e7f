"""session_service/store/redis_client.py: hundreds of concurrent calls are all answered
(redis-py 8's default pool of 100 connections failed the 101st at once)."""

from __future__ import annotations

import asyncio

from deploy.stack.processes import RedisServer
from session_service.store.redis_client import POOL_CONNECTIONS, close, connect

BLOCK_S = 0.2
CONCURRENT_CALLS = 500


async def test_hundreds_of_concurrent_calls_are_all_answered(redis_server: RedisServer) -> None:
    assert CONCURRENT_CALLS <= POOL_CONNECTIONS
    client = connect(redis_server.url, timeout_ms=5000, cluster=False)
    calls = CONCURRENT_CALLS
    try:
        # Each BLPOP holds its connection for BLOCK_S: every call has one at the same time.
        replies = await asyncio.gather(
            *(client.blpop([f"empty-{i}"], timeout=BLOCK_S) for i in range(calls))
        )
    finally:
        await close(client)

    assert replies == [None] * calls
