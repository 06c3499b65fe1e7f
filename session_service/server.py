"""Assembles the session service: store, registry, AI client, gRPC server, background loops.

Health is NOT_SERVING until Redis answers, and follows Redis afterwards (probe every
HEALTH_PROBE_MS). On stop: NOT_SERVING, owners closed (subscribers told to resubscribe),
then the gRPC server stops with a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from common.grpc_server import NOT_SERVING, SERVER_OPTIONS, SERVING, add_health_and_reflection
from durablechat.v1 import session_pb2, session_pb2_grpc
from session_service.ai_client import AiClient
from session_service.config import Config
from session_service.errors import SessionClosed, StoreUnavailable
from session_service.registry import Registry
from session_service.servicer import SessionServicer
from session_service.store import Store

logger = logging.getLogger(__name__)

SERVICE_NAME = session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name


class SessionServer:
    """Owns every long-lived object of one session-service process and its background tasks."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.store = Store.from_url(cfg.redis_url, cfg.redis_timeout_ms)
        self.ai = AiClient(cfg.ai_service_addr, cfg.ai_timeout_ms)
        self.registry = Registry(self.store, self.ai, cfg.limits, cfg.session_idle_ms)
        self.server = grpc.aio.server(options=SERVER_OPTIONS)
        session_pb2_grpc.add_SessionServiceServicer_to_server(
            SessionServicer(self.registry, cfg.limits), self.server
        )
        self.health = add_health_and_reflection(self.server, [SERVICE_NAME])
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0

    async def start(self) -> int:
        self.port = self.server.add_insecure_port(f"{self.cfg.bind_host}:{self.cfg.port}")
        if self.port == 0:
            raise RuntimeError(f"cannot bind {self.cfg.bind_host}:{self.cfg.port}")
        await self.server.start()
        self._tasks = [
            asyncio.create_task(self._probe_forever(), name="health-probe"),
            asyncio.create_task(self.registry.sweep_forever(), name="idle-sweep"),
        ]
        for task in self._tasks:
            task.add_done_callback(_log_crash)
        logger.info(
            "session service listening",
            extra={"port": self.port, "pod_id": self.cfg.pod_id, "redis": self.cfg.redis_url},
        )
        return self.port

    async def _set_health(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def _probe_forever(self) -> None:
        serving: bool | None = None
        while True:
            try:
                await self.store.ping()
                now_serving = True
            except StoreUnavailable as exc:
                now_serving = False
                if serving is not False:
                    logger.warning("redis unavailable: %s", exc)
            if now_serving != serving:
                serving = now_serving
                await self._set_health(serving)
            await asyncio.sleep(self.cfg.health_probe_ms / 1000)

    async def stop(self, grace_s: float = 5.0) -> None:
        await self._set_health(False)
        for task in self._tasks:
            task.cancel()
        await self.registry.close_all(SessionClosed("session service stopping; resubscribe"))
        await self.server.stop(grace_s)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.ai.close()
        await self.store.close()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("background task %s died", task.get_name(), exc_info=task.exception())
