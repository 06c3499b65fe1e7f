"""Cluster membership in Redis: each pod's heartbeat with a TTL, and the live member set.

Keys share the hash tag `{dc-cluster}` (one Redis Cluster slot): `{dc-cluster}:members` (sorted
set: pod id scored by its expiry in Redis server time, so pod clocks do not matter) and
`{dc-cluster}:addrs` (pod id → address). A pod that stops heartbeating drops out of the live set
when its TTL passes; reads filter expired entries, heartbeats delete them.
"""

from __future__ import annotations

from session_service.errors import StoreUnavailable
from session_service.store.redis_client import REDIS_ERRORS, RedisClient

MEMBERS_KEY = "{dc-cluster}:members"
ADDRS_KEY = "{dc-cluster}:addrs"

_HEARTBEAT = """#!lua flags=allow-oom
-- allow-oom: at Redis's maxmemory pods stay members, so reads go on (footprint.py).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, pod in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[2], pod)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

_MEMBERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, pod in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  out[#out + 1] = pod
  out[#out + 1] = redis.call('HGET', KEYS[2], pod) or ''
end
return out
"""

_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""


class MembersStore:
    """Heartbeats and member reads; one script call each."""

    def __init__(self, client: RedisClient) -> None:
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._members = client.register_script(_MEMBERS)
        self._leave = client.register_script(_LEAVE)

    async def heartbeat(self, pod_id: str, address: str, ttl_ms: int) -> None:
        try:
            await self._heartbeat(keys=[MEMBERS_KEY, ADDRS_KEY], args=[pod_id, address, ttl_ms])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def members(self) -> dict[str, str]:
        """Live pods: id → address."""
        try:
            reply = await self._members(keys=[MEMBERS_KEY, ADDRS_KEY], args=[])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        flat = [item.decode() for item in reply]
        return dict(zip(flat[0::2], flat[1::2], strict=True))

    async def leave(self, pod_id: str) -> None:
        try:
            await self._leave(keys=[MEMBERS_KEY, ADDRS_KEY], args=[pod_id])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
