"""Cluster membership in Redis: each pod's heartbeat with a TTL, and the live member set.

Keys share the hash tag `{dc-cluster}` (one Redis Cluster slot): `{dc-cluster}:members` (sorted
set: pod id scored by its expiry in Redis server time, so pod clocks do not matter) and
`{dc-cluster}:addrs` (pod id → address). A pod that stops heartbeating drops out of the live set
when its TTL passes; reads filter expired entries, heartbeats delete them.
"""

from __future__ import annotations

from session_service.errors import StoreUnavailable
from session_service.store.keys import ADDRS_KEY, MEMBERS_KEY
from session_service.store.redis_client import REDIS_ERRORS, RedisClient
from session_service.store.scripts import register


class MembersStore:
    """Heartbeats and member reads; one script call each."""

    def __init__(self, client: RedisClient) -> None:
        self._heartbeat = register(client, "cluster_heartbeat")
        self._members = register(client, "cluster_members")
        self._leave = register(client, "cluster_leave")

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
