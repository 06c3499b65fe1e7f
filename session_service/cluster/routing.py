"""Am I the owner? Decides, per call, whether to serve a session here or which pod to forward to.

Rules, in order: a session with an open owner on this pod is served here (it holds the lease);
else the ring's owner serves it (activating it, which may find a live lease holder elsewhere:
then the call goes there); else the call is forwarded to the ring's owner. A call is forwarded at
most MAX_HOPS times; past that the client gets retry-safe UNAVAILABLE with the owner's address.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from common.ring import EmptyRing
from session_service.cluster.membership import Membership
from session_service.cluster.registry import Registry
from session_service.errors import Moving, NotOwner

MAX_HOPS = 2


@dataclass(frozen=True)
class Forward:
    pod_id: str
    address: str


class Router:
    def __init__(self, membership: Membership, registry: Registry) -> None:
        self._membership = membership
        self._registry = registry
        self.draining = asyncio.Event()
        """Set when this pod drains: the streams it relays for other pods end (retry-safe)."""

    def target(self, session_id: str) -> Forward | None:
        """None to serve here, else where to forward."""
        if self._registry.local(session_id) is not None:
            return None
        try:
            owner = self._membership.owner_of(session_id)
        except EmptyRing as exc:
            raise Moving("no session-service pod is live; retry") from exc
        if owner == self._membership.pod_id:
            return None
        return self.forward_to(owner)

    def forward_to(self, pod_id: str) -> Forward:
        address = self._membership.address_of(pod_id)
        if not address:
            raise Moving(f"pod {pod_id} owns the session but is not reachable; retry")
        return Forward(pod_id, address)

    async def until_gone(self, pod_id: str) -> None:
        await self._membership.until_gone(pod_id)

    def check_hops(self, hops: int, forward: Forward) -> None:
        if hops >= MAX_HOPS:
            raise NotOwner(
                f"pod {forward.pod_id} owns this session; retry", forward.pod_id, forward.address
            )
