"""Builds and runs the AI service's gRPC server: Generate plus health and reflection; SIGTERM or
SIGINT drains in-flight answers for SHUTDOWN_GRACE_S, then stops."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from prometheus_client import CollectorRegistry

from ai_service.config import Config
from ai_service.metrics import AiMetrics
from ai_service.provider import OpenAIProvider
from ai_service.servicer import AiServicer
from common import tracing
from common.grpc_server import SERVER_OPTIONS, SERVING, add_health_and_reflection
from common.metrics import GrpcMetrics, serve_metrics
from common.planes import ClusterOnly
from durablechat.v1 import ai_pb2, ai_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME: str = ai_pb2.DESCRIPTOR.services_by_name["AiService"].full_name
SHUTDOWN_GRACE_S = 5.0
"""How long in-flight answers may run on after SIGTERM before they are cut."""


async def create_server(
    cfg: Config, provider: OpenAIProvider, registry: CollectorRegistry | None = None
) -> tuple[grpc.aio.Server, int]:
    """A server bound to BIND_HOST:AI_PORT (not yet started) and the port it got.

    Health reports SERVING as soon as the server starts: the model is a per-call dependency whose
    failures reach callers as UNAVAILABLE, not a start-up one. Every other call (Generate,
    reflection) without the cluster key is UNAUTHENTICATED (common/planes.py; last, so metrics
    and traces see the refusals). During `stop(grace)` grpc rejects
    new calls, health checks included, so callers stop picking this instance at once.
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = AiMetrics(registry)
    server = grpc.aio.server(
        options=SERVER_OPTIONS,
        interceptors=[
            *tracing.server_interceptors(),
            GrpcMetrics(registry),
            ClusterOnly(cfg.cluster),
        ],
    )
    ai_pb2_grpc.add_AiServiceServicer_to_server(AiServicer(provider, cfg, metrics), server)
    health = add_health_and_reflection(server, [SERVICE_NAME])
    port = server.add_insecure_port(f"{cfg.bind_host}:{cfg.port}")
    for name in ("", SERVICE_NAME):
        # Nobody can ask before start(), so this reads as "SERVING once started".
        await health.set(name, SERVING)
    return server, port


async def serve(cfg: Config) -> None:
    """Runs until SIGTERM or SIGINT, then stops gracefully and closes the model client."""
    provider = OpenAIProvider(
        base_url=cfg.openai_base_url,
        api_key=cfg.openai_api_key,
        timeout_ms=cfg.request_timeout_ms,
        http_client=cfg.http_client,
    )
    registry = CollectorRegistry()
    stop_metrics = None
    try:
        server, port = await create_server(cfg, provider, registry)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await server.start()
        if cfg.metrics_port:
            stop_metrics = serve_metrics(registry, cfg.bind_host, cfg.metrics_port)
        logger.info(
            "ai service listening",
            extra={"host": cfg.bind_host, "port": port, "model": cfg.openai_model},
        )
        await stopping.wait()
        logger.info("ai service stopping", extra={"grace_s": SHUTDOWN_GRACE_S})
        await server.stop(SHUTDOWN_GRACE_S)
    finally:
        await provider.close()
        if stop_metrics is not None:
            stop_metrics()
