"""Assembles one session-service pod: Redis client, owners, membership, leases, routing, gRPC.

Health is SERVING only while Redis answers and the pod is not draining. On stop (SIGTERM) the
pod goes NOT_SERVING, leaves the member set so the ring moves its sessions elsewhere, hands
every session off (answers finish, leases released), then stops the gRPC server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from common import tracing
from common.auth import Verifier
from common.exposure import redacted
from common.grpc_server import NOT_SERVING, SERVER_OPTIONS, SERVING, add_health_and_reflection
from common.metrics import GrpcMetrics, serve_metrics
from common.revocation import Revocations
from common.ring import HashRing
from durablechat.v1 import attachments_pb2, cluster_pb2, session_pb2
from session_service.actor.ai_client import AiClient
from session_service.cluster.leases import LeaseKeeper
from session_service.cluster.membership import Membership
from session_service.cluster.peers import Peers
from session_service.cluster.registry import Registry
from session_service.cluster.routing import Router
from session_service.config import Config
from session_service.errors import SessionClosed, StoreUnavailable
from session_service.features.attachments.rpc import AttachmentServicer
from session_service.features.threads.auto_title import AutoTitle
from session_service.features.threads.purge import Purger
from session_service.metrics import SessionMetrics
from session_service.rpc.cluster import ClusterServicer
from session_service.rpc.operators import Operators
from session_service.rpc.undecodable import add_service
from session_service.servicer import SessionServicer
from session_service.store import durability
from session_service.store.attachments import AttachmentStore
from session_service.store.members import MembersStore
from session_service.store.presence import PresenceLink
from session_service.store.redis_client import REDIS_ERRORS, close, connect
from session_service.store.sessions import Store
from session_service.store.threads import ThreadStore

logger = logging.getLogger(__name__)

SERVICE_NAME = session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
CLUSTER_SERVICE_NAME = cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name
ATTACHMENT_SERVICE_NAME = attachments_pb2.DESCRIPTOR.services_by_name["AttachmentService"].full_name


class SessionServer:
    """Owns every long-lived object of one pod and its background tasks."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._redis = connect(cfg.redis_url, cfg.redis_timeout_ms, cfg.redis_cluster)
        self.metrics_registry = CollectorRegistry()
        self.metrics = SessionMetrics(self.metrics_registry)
        self._stop_metrics: Callable[[], None] | None = None
        self.store = Store(
            self._redis,
            cfg.quotas,
            AttachmentStore(
                self._redis,
                Path(cfg.attachments_dir),
                cfg.max_attachment_bytes,
                cfg.max_attachment_bytes_per_user,
            ),
        )
        self.purger = Purger(self._redis, cfg.limits.purge_interval_s)
        self.ai = AiClient(cfg.ai_service_addr, cfg.ai_timeout_ms, cfg.cluster.metadata())
        self._presence = (  # a Redis Cluster's client ids are per node: the TTLs only
            None if cfg.redis_cluster else PresenceLink(cfg.redis_url, cfg.redis_timeout_ms)
        )
        self.membership = Membership(
            MembersStore(self._redis),
            cfg.pod_id,
            cfg.advertise_addr,
            cfg.member_ttl_ms,
            cfg.members_poll_ms,
            self._members_changed,
            self._presence,
            cfg.lease_ttl_ms,
        )
        self.registry = Registry(
            self.store,
            self.ai,
            cfg.limits,
            idle_ms=cfg.session_idle_ms,
            pod_id=cfg.pod_id,
            lease_ttl_ms=cfg.lease_ttl_ms,
            lease_margin_ms=cfg.lease_margin_ms,
            handoff_timeout_ms=cfg.handoff_timeout_ms,
            is_live=self.membership.is_live,
            is_gone=self.membership.is_gone,
            metrics=self.metrics,
            after_answer=AutoTitle(self.ai, cfg.limits),
        )
        self.leases = LeaseKeeper(
            self.store,
            self.registry,
            cfg.pod_id,
            cfg.lease_ttl_ms,
            cfg.lease_margin_ms,
            self.metrics,
        )
        self.peers = Peers()
        self.router = Router(self.membership, self.registry)
        self.server = grpc.aio.server(
            options=SERVER_OPTIONS,
            interceptors=[*tracing.server_interceptors(), GrpcMetrics(self.metrics_registry)],
        )
        verifier = Verifier(cfg.auth)
        revocations = Revocations(self._redis if cfg.auth.mode == "jwt" else None)
        add_service(
            self.server,
            session_pb2.DESCRIPTOR.services_by_name["SessionService"],
            SessionServicer(
                self.registry,
                self.router,
                self.peers,
                cfg.limits,
                self.store.usage,
                ThreadStore(self._redis),
                verifier,
                revocations,
                attachments=self.store.attachments,
                cluster=cfg.cluster,
            ),
        )
        self.attachments = AttachmentServicer(
            self.store.attachments,
            self.store.quotas,
            verifier,
            revocations,
            lambda: self.membership.address,
        )
        add_service(
            self.server,
            attachments_pb2.DESCRIPTOR.services_by_name["AttachmentService"],
            self.attachments,
        )
        add_service(
            self.server,
            cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"],
            ClusterServicer(
                self.membership,
                self.registry,
                lambda: self._draining,
                self.drain,
                Operators(cfg.cluster, verifier, revocations),
            ),
        )
        self.health = add_health_and_reflection(
            self.server, [SERVICE_NAME, CLUSTER_SERVICE_NAME, ATTACHMENT_SERVICE_NAME]
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._draining = False
        self.port = 0

    async def _members_changed(self, ring: HashRing) -> None:
        self.registry.rebalance(ring)

    async def start(self) -> int:
        self.port = self.server.add_insecure_port(f"{self.cfg.bind_host}:{self.cfg.port}")
        if self.port == 0:
            raise RuntimeError(f"cannot bind {self.cfg.bind_host}:{self.cfg.port}")
        if not self.cfg.advertise_addr:
            self.membership.address = f"{self.cfg.bind_host}:{self.port}"
            self.membership.members = {self.cfg.pod_id: self.membership.address}
        await self._set_health(False)  # until the first Redis probe: not grpc's default SERVING
        await self._require_durable_redis()  # before any call can reach this pod
        await self.server.start()
        if self.cfg.metrics_port:
            self._stop_metrics = serve_metrics(
                self.metrics_registry, self.cfg.bind_host, self.cfg.metrics_port
            )
        try:
            await self.membership.join()
        except StoreUnavailable as exc:
            logger.warning("cannot join the cluster yet: %s", exc)
        self._tasks = [
            asyncio.create_task(self._probe_forever(), name="health-probe"),
            asyncio.create_task(self.registry.sweep_forever(), name="idle-sweep"),
            asyncio.create_task(self.purger.purge_forever(), name="purge"),
            asyncio.create_task(self.membership.run_forever(), name="membership"),
            asyncio.create_task(self.leases.renew_forever(), name="lease-renewal"),
            asyncio.create_task(self.leases.watch_forever(), name="lease-watchdog"),
        ]
        for task in self._tasks:
            task.add_done_callback(_log_crash)
        logger.info(
            "session service listening",
            extra={
                "port": self.port,
                "pod_id": self.cfg.pod_id,
                "redis": redacted(self.cfg.redis_url),
                "address": self.membership.address,
            },
        )
        return self.port

    async def _require_durable_redis(self) -> None:
        """Raises NotDurable unless Redis fsyncs every write before answering (REDIS_DURABILITY,
        store/durability.py); waits while Redis cannot be reached."""
        if self.cfg.redis_durability == "trust":
            logger.warning("REDIS_DURABILITY=trust: Redis's appendonly/appendfsync not checked")
            return
        waiting = False
        while True:
            try:
                found = await durability.settings(self._redis)
                break
            except REDIS_ERRORS as exc:
                if not waiting:
                    logger.warning("waiting for Redis to check its durability: %s", exc)
                    waiting = True
                await asyncio.sleep(self.cfg.health_probe_ms / 1000)
        reason = durability.refusal(found)
        if reason is not None:
            await close(self._redis)
            raise durability.NotDurable(reason)

    async def _set_health(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def _probe_forever(self) -> None:
        serving: bool | None = None
        while True:
            try:
                await self.store.ping()
                now_serving = not self._draining
            except StoreUnavailable as exc:
                now_serving = False
                if serving is not False:
                    logger.warning("redis unavailable: %s", exc)
            if now_serving != serving:
                serving = now_serving
                await self._set_health(serving)
            await asyncio.sleep(self.cfg.health_probe_ms / 1000)

    async def drain(self) -> None:
        """Hands every session to the remaining pods; the pod keeps answering meanwhile."""
        self._draining = True
        self.router.draining.set()
        await self._set_health(False)
        for task in self._tasks:  # no heartbeat may land after we left the member set
            if task.get_name() == "membership":
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.membership.leave()
        await self.registry.handoffs_done()

    async def stop(self, grace_s: float = 5.0) -> None:
        logger.info("session service stopping", extra={"pod_id": self.cfg.pod_id})
        await self.drain()
        for task in self._tasks:
            task.cancel()
        await self.registry.close_all(SessionClosed("session service stopping; resubscribe"))
        await self.server.stop(grace_s)
        logger.info("grpc server stopped", extra={"pod_id": self.cfg.pod_id})
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.peers.close()
        await self.ai.close()
        await self.attachments.close()
        await close(self._redis)
        if self._presence is not None:
            await self._presence.close()
        if self._stop_metrics is not None:
            self._stop_metrics()
        logger.info("session service stopped", extra={"pod_id": self.cfg.pod_id})


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("background task %s died", task.get_name(), exc_info=task.exception())
