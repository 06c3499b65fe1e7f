"""Live pods and their changes: this pod's heartbeat, the member set, and the ring over it.

Contract: the ring is rebuilt whenever the set of live pods read from Redis changes, and
`on_change` is called with the new ring (never concurrently with itself). If Redis cannot be
read the last known ring stays in force. After `leave()` this pod is out of its own ring, so
every session it owns is handed to the pods that remain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from common.ring import HashRing
from session_service.errors import StoreUnavailable
from session_service.store.members import MembersStore

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
    ) -> None:
        self.pod_id = pod_id
        self.address = address
        self._store = store
        self._ttl_ms = ttl_ms
        self._poll_s = poll_ms / 1000
        self._heartbeat_every = max(1, ttl_ms // 4 // max(1, poll_ms))
        self._on_change = on_change
        self.members: dict[str, str] = {pod_id: address}
        self.ring = HashRing([pod_id])
        self._leaving = False
        self._changed = asyncio.Event()

    def owner_of(self, session_id: str) -> str:
        return self.ring.owner(session_id)

    def address_of(self, pod_id: str) -> str | None:
        return self.members.get(pod_id)

    def is_live(self, pod_id: str) -> bool:
        return pod_id in self.members

    async def until_gone(self, pod_id: str) -> None:
        """Returns once `pod_id` is no longer a live member."""
        while pod_id in self.members:
            await self._changed.wait()

    async def join(self) -> None:
        """Registers this pod and reads the members once; raises StoreUnavailable."""
        await self._store.heartbeat(self.pod_id, self.address, self._ttl_ms)
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
        members = await self._store.members()
        if self._leaving:
            members.pop(self.pod_id, None)
        await self._apply(members)

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
                    await self._store.heartbeat(self.pod_id, self.address, self._ttl_ms)
                await self.refresh()
            except StoreUnavailable as exc:
                logger.warning("membership: %s", exc, extra={"pod_id": self.pod_id})
