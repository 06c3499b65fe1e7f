"""Builds the one Redis client of a process: a single Redis or, by config, a Redis Cluster.

No call is retried by the client: a retried script whose first attempt landed would apply twice.
Every call gives up after the configured timeout with a RedisError.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

RedisClient = aioredis.Redis | aioredis.RedisCluster


def connect(url: str, timeout_ms: int, cluster: bool) -> RedisClient:
    timeout_s = timeout_ms / 1000
    if cluster:
        return aioredis.RedisCluster.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
