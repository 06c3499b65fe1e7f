"""Sends each session's calls straight to its owner pod, by the ring the pods themselves use.

The gateway learns the live pods from any pod (`ClusterService.ListMembers` over the shared
channel, every `REFRESH_S`, with the cluster key: pods answer it to the cluster only) and
builds the same consistent-hash ring. A call for a session goes to its owner's channel; when
the owner just failed a call (a crash, a pause) it goes to the next pod on the ring, which
forwards it or takes the session over; when the ring is unknown, over the shared channel to any
pod. Routing is only an optimisation: every pod serves every session correctly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import grpc

from common.channels import Channels
from common.grpc_server import CHANNEL_OPTIONS
from common.ring import HashRing
from durablechat.v1 import attachments_pb2_grpc, cluster_pb2, cluster_pb2_grpc, session_pb2_grpc

logger = logging.getLogger(__name__)

REFRESH_S = 1.0
FAST_REFRESH_S = 0.1
"""While a pod that failed a call is still listed: the pods drop a dead one within a poll."""
REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
"""ListMembers answers to pods refusing this gateway's cluster key: said once, loudly (calls
still work, over the shared channel, but are not sent to each session's owner)."""
SUSPECT_S = 3.0
"""How long a pod that failed a call is bypassed (longer than a takeover)."""


class PodRouter:
    """Owner-aware stubs over one long-lived channel per pod plus the shared channel."""

    def __init__(
        self,
        shared: grpc.aio.Channel,
        options: list[tuple[str, int]],
        cluster_metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._cluster_metadata = cluster_metadata
        """The cluster key (common/planes.py) ListMembers carries."""
        self._shared = session_pb2_grpc.SessionServiceStub(shared)
        self._cluster = cluster_pb2_grpc.ClusterServiceStub(shared)
        self.attachments = attachments_pb2_grpc.AttachmentServiceStub(shared)
        """Attachment uploads and downloads: any pod (they share the files)."""
        self._channels = Channels([*CHANNEL_OPTIONS, *options])
        """One per pod, opened on first use; those of pods that left stay open (see refresh)."""
        self._ring: HashRing | None = None
        self._addresses: dict[str, str] = {}
        self._suspect: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        """Set by `failed`: the member list is read again at once, then every FAST_REFRESH_S
        while the failed pod is listed."""

    def route(self, session_id: str) -> tuple[session_pb2_grpc.SessionServiceStub, str]:
        """The stub to call for a session and the pod address it targets ("" = any pod): the
        owner, or, while the owner is suspect, the next pod on the ring (which forwards)."""
        if self._ring is None or not len(self._ring):
            return self._shared, ""
        now = time.monotonic()
        for pod in self._ring.owners(session_id, len(self._ring)):
            address = self._addresses[pod]
            if self._suspect.get(address, 0.0) <= now:
                return self._stub(address), address
        return self._shared, ""

    def _stub(self, address: str) -> session_pb2_grpc.SessionServiceStub:
        return self._channels.stub(address, session_pb2_grpc.SessionServiceStub)

    async def until_gone(self, address: str) -> None:
        """Returns once the pod at `address` has left the member set."""
        while address in self._addresses.values():
            await self._changed.wait()

    def failed(self, address: str) -> None:
        """A call to this pod failed as if it were down: go around it for a while."""
        if address:
            self._suspect[address] = time.monotonic() + SUSPECT_S
            self._wake.set()

    def _suspect_listed(self) -> bool:
        now = time.monotonic()
        listed = set(self._addresses.values())
        return any(until > now and a in listed for a, until in self._suspect.items())

    async def refresh(self) -> None:
        reply = await self._cluster.ListMembers(
            cluster_pb2.ListMembersRequest(), timeout=1.0, metadata=self._cluster_metadata
        )
        addresses = {m.pod_id: m.address for m in reply.members}
        if addresses != self._addresses:
            for address in set(addresses.values()) - set(self._addresses.values()):
                self._suspect.pop(address, None)  # (re)joined: reachable again
            self._addresses = addresses
            self._ring = HashRing(addresses, vnodes=reply.vnodes) if addresses else None
            logger.info("session pods changed", extra={"pods": sorted(addresses)})
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
            # Channels of pods that left stay open: closing a channel would cut streams still
            # running on it without telling their readers; a pod that left ends them itself.

    async def refresh_forever(self) -> None:
        warned = False
        while True:
            try:
                await self.refresh()
            except grpc.aio.AioRpcError as exc:
                refused = exc.code() in REFUSED
                log = logger.warning if refused and not warned else logger.debug
                log("cannot list session pods: %s: %s", exc.code().name, exc.details())
                warned = warned or refused
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                wait = FAST_REFRESH_S if self._suspect_listed() else REFRESH_S
                await asyncio.wait_for(self._wake.wait(), wait)

    async def close(self) -> None:
        await self._channels.close()
