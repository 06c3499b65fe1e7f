"""Builds the one Redis client of a process: a single Redis or, by config, a Redis Cluster.

No call is retried by the client: a retried script whose first attempt landed would apply twice.
Every call gives up after the configured timeout with a RedisError.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import OutOfMemoryError, RedisClusterException, RedisError

RedisClient = aioredis.Redis | aioredis.RedisCluster

REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
"""What a failed Redis call raises; RedisClusterException (all nodes down, a refused command)
is not a RedisError."""

__all__ = [
    "REDIS_ERRORS",
    "OutOfMemoryError",
    "RedisClient",
    "close",
    "connect",
    "is_cluster",
    "node_of",
]


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, aioredis.RedisCluster)


def node_of(client: RedisClient, key: str) -> str:
    """The name of the node serving `key` ("" for a single Redis): batches go per node."""
    if isinstance(client, aioredis.RedisCluster):
        node = client.get_node_from_key(key)
        return node.name if node is not None else ""
    return ""


async def close(client: RedisClient) -> None:
    """Closes every connection, including those a cluster client keeps after failures."""
    await client.aclose()
    if isinstance(client, aioredis.RedisCluster):
        await client.nodes_manager.aclose()
        await client.nodes_manager.aclose("startup_nodes")


def connect(url: str, timeout_ms: int, cluster: bool) -> RedisClient:
    timeout_s = timeout_ms / 1000
    if cluster:
        return aioredis.RedisCluster.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
