"""Cluster membership in Redis: each pod's heartbeat with a TTL, and the live member set.

Keys share the hash tag `{dc-cluster}` (one Redis Cluster slot): `{dc-cluster}:members` (sorted
set: pod id scored by its expiry in Redis server time, so pod clocks do not matter),
`{dc-cluster}:addrs` (pod id → address), `{dc-cluster}:conns` (pod id → presence token) and
`{dc-cluster}:gone` (pods evicted because their presence connection closed: keys.py). A pod that
stops heartbeating drops out of the live set when its TTL passes; reads filter expired entries,
heartbeats delete them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from session_service.errors import StoreUnavailable
from session_service.store.keys import ADDRS_KEY, CONNS_KEY, GONE_KEY, MEMBERS_KEY
from session_service.store.redis_client import REDIS_ERRORS, RedisClient
from session_service.store.scripts import register

KEYS = [MEMBERS_KEY, ADDRS_KEY, CONNS_KEY, GONE_KEY]


@dataclass(frozen=True)
class View:
    """The member set as read at one instant."""

    addresses: dict[str, str]
    """Live pods: id → address."""
    tokens: dict[str, str] = field(default_factory=dict)
    """Live pods' presence tokens ('' or absent: none registered)."""
    gone: frozenset[str] = frozenset()
    """Pods evicted as gone whose leases may still be broken."""


class MembersStore:
    """Heartbeats, member reads and evictions; one script call each."""

    def __init__(self, client: RedisClient) -> None:
        self._heartbeat = register(client, "cluster_heartbeat")
        self._members = register(client, "cluster_members")
        self._leave = register(client, "cluster_leave")
        self._evict = register(client, "cluster_evict")

    async def heartbeat(self, pod_id: str, address: str, ttl_ms: int, token: str = "") -> None:
        try:
            await self._heartbeat(keys=KEYS, args=[pod_id, address, ttl_ms, token])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def view(self) -> View:
        try:
            listed, gone = await self._members(keys=KEYS, args=[])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        flat = [item.decode() for item in listed]
        pods = flat[0::3]
        return View(
            dict(zip(pods, flat[1::3], strict=True)),
            {p: t for p, t in zip(pods, flat[2::3], strict=True) if t},
            frozenset(p.decode() for p in gone),
        )

    async def members(self) -> dict[str, str]:
        """Live pods: id → address."""
        return (await self.view()).addresses

    async def leave(self, pod_id: str) -> None:
        try:
            await self._leave(keys=KEYS[:3], args=[pod_id])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def evict(self, pod_id: str, token: str, lease_ttl_ms: int) -> bool:
        """Evicts a pod whose presence connection (`token`) closed; False if it registered
        another connection meanwhile."""
        try:
            return bool(await self._evict(keys=KEYS, args=[pod_id, token, lease_ttl_ms]))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
