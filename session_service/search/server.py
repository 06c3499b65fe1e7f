"""Runs the search indexer and SearchService until SIGTERM or SIGINT (docs/search.md). Health
is SERVING once the first catch-up is done, so callers do not see an index that is behind by
more than the feed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc

from common.auth import Verifier
from common.grpc_server import NOT_SERVING, SERVER_OPTIONS, SERVING, add_health_and_reflection
from common.revocation import Revocations
from durablechat.v1 import search_pb2
from session_service.rpc.undecodable import add_service
from session_service.search.config import SearchConfig
from session_service.search.indexer import Indexer
from session_service.search.rate import SearchRate
from session_service.search.servicer import SearchServicer
from session_service.search.workers import IndexWorkers
from session_service.store.redis_client import close, connect

logger = logging.getLogger(__name__)
SERVICE_NAME: str = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name


async def serve(cfg: SearchConfig) -> None:
    workers = IndexWorkers(cfg.db_path, cfg.readers, cfg.min_term_chars, cfg.query_ms)
    fresh = workers.index.fresh
    redis = connect(cfg.redis_url, cfg.redis_timeout_ms, cfg.redis_cluster)
    indexer = Indexer(redis, workers, cfg.indexer_id)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    jwt = cfg.auth.mode == "jwt"
    revocations = Revocations(redis if jwt else None)
    rate = SearchRate(redis, cfg.rate_per_min if jwt else 0)
    add_service(  # undecodable requests: INVALID_ARGUMENT, not grpcio's UNKNOWN
        server,
        search_pb2.DESCRIPTOR.services_by_name["SearchService"],
        SearchServicer(workers, Verifier(cfg.auth), revocations, rate),
    )
    health = add_health_and_reflection(server, [SERVICE_NAME])
    port = server.add_insecure_port(f"{cfg.bind_host}:{cfg.port}")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    running = asyncio.create_task(indexer.run_forever(rebuild=fresh or cfg.rebuild))
    for name in ("", SERVICE_NAME):  # SERVING only once caught up (rebuilt, if fresh)
        await health.set(name, NOT_SERVING)
    try:
        await server.start()
        logger.info("search listening", extra={"port": port, "db": cfg.db_path})
        ready = asyncio.create_task(indexer.ready.wait())
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({ready, stop}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            for name in ("", SERVICE_NAME):
                await health.set(name, SERVING)
            logger.info("search index caught up")
        await stopping.wait()
        ready.cancel()
        await server.stop(2.0)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await close(redis)
        await asyncio.to_thread(workers.close)
