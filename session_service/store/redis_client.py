"""Builds the one Redis client of a process: a single Redis or, by config, a Redis Cluster.

No call is retried by the client: a retried script whose first attempt landed would apply twice.
Every call gives up after the configured timeout with a RedisError. A single Redis is reached
through a pool of up to POOL_CONNECTIONS connections.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import OutOfMemoryError, RedisClusterException, RedisError

RedisClient = aioredis.Redis | aioredis.RedisCluster

POOL_CONNECTIONS = 2048
"""Connections to a single Redis (its default `maxclients` is 10,000). redis-py 8's pool holds
100 and fails the 101st concurrent call ("Too many connections"): at 250 concurrent answers the
pod abandoned answers with it. A pool that waits for a free connection instead
(BlockingConnectionPool) cost 7 % of the pod's CPU under that load (py-spy), so the bound is
set far above what one pod has in flight, as redis-py's earlier unbounded pools were."""

REDIS_ERRORS: tuple[type[Exception], ...] = (
    RedisError,
    RedisClusterException,
    OSError,
    RuntimeError,
    AttributeError,
)
"""What a failed Redis call raises; RedisClusterException (all nodes down, a refused command)
is not a RedisError. RuntimeError and AttributeError: right after a Redis Cluster master
restarts, redis-py 8.1's cluster client may send on a connection another task has just
disconnected, and fails before anything is sent: uvloop's "unable to perform operation on
<TCPTransport closed=True>", or "'NoneType' object has no attribute 'writelines'". Both are
an unavailable Redis, not a bug of ours; they turned stored appends and activations into
INTERNAL (tests/integration/test_durability.py, the Redis Cluster master kill). Every use
wraps only Redis calls."""

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
    pool = aioredis.ConnectionPool.from_url(
        url,
        max_connections=POOL_CONNECTIONS,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return aioredis.Redis.from_pool(pool)
