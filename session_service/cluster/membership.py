"""Live pods and their changes: this pod's heartbeat, the member set, and the ring over it.

Contract: the ring is rebuilt whenever the set of live pods read from Redis changes, and
`on_change` is called with the new ring (never concurrently with itself). If Redis cannot be
read the last known ring stays in force. After `leave()` this pod is out of its own ring, so
every session it owns is handed to the pods that remain.

Detection of a dead pod (docs/failover.md), whichever comes first:
- presence (store/presence.py): every poll (MEMBERS_POLL_MS) each pod asks Redis which members'
  presence connections are open; a member whose connection closed (its process died: kill -9,
  OOM kill, crash) is evicted at once and marked gone, so its leases may be broken without
  waiting for their TTL (registry.py). Worst case: one poll plus two Redis round trips.
- heartbeat TTL (MEMBER_TTL_MS): a pod that stops heartbeating (paused, partitioned, its host
  gone) leaves the live set when its TTL passes; its leases are waited out (LEASE_TTL_MS).
A pod wrongly evicted (its connection was cut, its process lives) rejoins with its next
heartbeat; sessions taken from it meanwhile are fenced by epoch, never written twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from common.ring import HashRing
from session_service.errors import StoreUnavailable
from session_service.store.members import MembersStore, View
from session_service.store.presence import PresenceLink

logger = logging.getLogger(__name__)


class Membership:
    """The member set as this pod sees it; read by routing, fed by one background loop."""

    def __init__(
        self,
        store: MembersStore,
        pod_id: str,
        address: str,
        ttl_ms: int,
        poll_ms: int,
        on_change: Callable[[HashRing], Awaitable[None]],
        presence: PresenceLink | None = None,
        lease_ttl_ms: int = 2000,
    ) -> None:
        self.pod_id = pod_id
        self.address = address
        self._store = store
        self._ttl_ms = ttl_ms
        self._poll_s = poll_ms / 1000
        self._heartbeat_every = max(1, ttl_ms // 4 // max(1, poll_ms))
        self._on_change = on_change
        self._presence = presence
        self._lease_ttl_ms = lease_ttl_ms
        self._token = ""
        """This pod's presence token as last registered."""
        self.members: dict[str, str] = {pod_id: address}
        self.ring = HashRing([pod_id])
        self.gone: frozenset[str] = frozenset()
        """Pods evicted because their process is gone: their leases may be broken at once."""
        self.evictions = 0
        self._leaving = False
        self._changed = asyncio.Event()

    def owner_of(self, session_id: str) -> str:
        return self.ring.owner(session_id)

    def address_of(self, pod_id: str) -> str | None:
        return self.members.get(pod_id)

    def is_live(self, pod_id: str) -> bool:
        return pod_id in self.members

    def is_gone(self, pod_id: str) -> bool:
        return pod_id in self.gone and pod_id not in self.members

    async def until_gone(self, pod_id: str) -> None:
        """Returns once `pod_id` is no longer a live member."""
        while pod_id in self.members:
            await self._changed.wait()

    async def until_changed(self) -> None:
        """Returns at the next change of the member set."""
        await self._changed.wait()

    async def join(self) -> None:
        """Registers this pod and reads the members once; raises StoreUnavailable."""
        if self._presence is not None:
            self._token = (await self._presence.probe([])).own
        await self._store.heartbeat(self.pod_id, self.address, self._ttl_ms, self._token)
        await self.refresh()

    async def leave(self) -> None:
        """Leaves the member set (best effort: the TTL removes us anyway) and the ring."""
        self._leaving = True
        try:
            await self._store.leave(self.pod_id)
        except StoreUnavailable as exc:
            logger.warning("could not leave the member set: %s", exc)
        await self._apply({p: a for p, a in self.members.items() if p != self.pod_id})

    async def refresh(self) -> None:
        view = await self._store.view()
        members = dict(view.addresses)
        if self._leaving:
            members.pop(self.pod_id, None)
        elif self._presence is not None:
            members = await self._check_presence(view, members)
        await self._apply(members)

    async def _check_presence(self, view: View, members: dict[str, str]) -> dict[str, str]:
        """Evicts members whose presence connection closed; registers ours again when it
        changed (a reconnect) or when we were evicted. Returns the members left."""
        assert self._presence is not None
        others = {p: t for p, t in view.tokens.items() if p != self.pod_id}
        probe = await self._presence.probe(list(others.values()))
        gone = set(view.gone)
        for pod, token in others.items():
            if probe.closed(token) and await self._store.evict(pod, token, self._lease_ttl_ms):
                self.evictions += 1
                logger.warning("pod gone: its Redis connection closed", extra={"gone": pod})
                members.pop(pod, None)
                gone.add(pod)
        self.gone = frozenset(gone)
        if probe.own != self._token or self.pod_id not in view.addresses:
            self._token = probe.own
            await self._store.heartbeat(self.pod_id, self.address, self._ttl_ms, self._token)
            members[self.pod_id] = self.address
        return members

    async def _apply(self, members: dict[str, str]) -> None:
        if members == self.members:
            return
        joined = sorted(members.keys() - self.members.keys())
        left = sorted(self.members.keys() - members.keys())
        self.members = members
        self.ring = HashRing(members)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        logger.info(
            "members changed",
            extra={
                "pod_id": self.pod_id,
                "members": sorted(members),
                "joined": joined,
                "left": left,
            },
        )
        await self._on_change(self.ring)

    async def run_forever(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(self._poll_s)
            tick += 1
            try:
                if tick % self._heartbeat_every == 0 and not self._leaving:
                    await self._store.heartbeat(
                        self.pod_id, self.address, self._ttl_ms, self._token
                    )
                await self.refresh()
            except StoreUnavailable as exc:
                logger.warning("membership: %s", exc, extra={"pod_id": self.pod_id})
