"""Keeps this pod's session leases: renews them all in one round trip per interval and drops
the sessions whose lease is lost or may have expired.

Contract: a pod treats a lease as gone at `t_sent + ttl - margin` on its monotonic clock, where
`t_sent` is when the renewal that succeeded was sent, and then stops serving and streaming that
session. Correctness never depends on this timing: a write of an owner that lost its lease is
refused by the epoch check in Redis. Timing only bounds how long a paused or partitioned old
owner may keep pushing already-generated text to its clients (at most the margin's worth).
"""

from __future__ import annotations

import asyncio
import logging
import time

from session_service.cluster.registry import Registry
from session_service.errors import Moving, StoreUnavailable
from session_service.metrics import SessionMetrics
from session_service.store.sessions import Store, lease_value

logger = logging.getLogger(__name__)

WATCHDOG_INTERVAL_S = 0.05


class LeaseKeeper:
    """One renewal loop and one expiry watchdog for every session this pod owns."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        pod_id: str,
        ttl_ms: int,
        margin_ms: int,
        metrics: SessionMetrics | None = None,
    ) -> None:
        self._metrics = metrics or SessionMetrics()
        self._store = store
        self._registry = registry
        self._pod_id = pod_id
        self._ttl_ms = ttl_ms
        self._valid_s = (ttl_ms - margin_ms) / 1000
        self._renew_every_s = ttl_ms / 3 / 1000

    async def renew_forever(self) -> None:
        """Renews on a fixed schedule: a slow round trip delays the next one, never adds to it."""
        while True:
            started = time.monotonic()
            await self.renew_once()
            await asyncio.sleep(max(0.0, started + self._renew_every_s - time.monotonic()))

    async def renew_once(self) -> None:
        actors = [a for a in self._registry.actors() if not a.closed]
        if not actors:
            return
        leases = [
            (a.session.session_id, lease_value(self._pod_id, a.session.epoch)) for a in actors
        ]
        sent = time.monotonic()
        try:
            kept = await self._store.renew(leases, self._ttl_ms)
        except StoreUnavailable as exc:
            logger.warning("lease renewal failed: %s", exc, extra={"pod_id": self._pod_id})
            return
        self._metrics.lease_renew_seconds.observe(time.monotonic() - sent)
        for actor, ok in zip(actors, kept, strict=True):
            if ok is None:
                continue  # its Redis node did not answer: the watchdog decides at the deadline
            if ok:
                actor.lease_deadline = max(actor.lease_deadline, sent + self._valid_s)
            else:
                logger.warning(
                    "lease lost",
                    extra={
                        "session_id": actor.session.session_id,
                        "epoch": actor.session.epoch,
                        "pod_id": self._pod_id,
                    },
                )
                actor.close(Moving("this pod lost the session's lease; retry"))

    async def watch_forever(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            now = time.monotonic()
            for actor in self._registry.actors():
                if not actor.closed and actor.lease_deadline < now:
                    logger.warning(
                        "lease expired locally",
                        extra={
                            "session_id": actor.session.session_id,
                            "epoch": actor.session.epoch,
                            "pod_id": self._pod_id,
                        },
                    )
                    actor.close(Moving("this pod's lease on the session expired; retry"))
