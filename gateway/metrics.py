"""The gateway's Prometheus metrics, served at `GET /metrics` on its HTTP port."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from common.metrics import LATENCY_BUCKETS


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        self.requests = Counter(
            "dc_gateway_http_requests",
            "HTTP requests (WebSocket upgrades included), by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "dc_gateway_http_latency_seconds",
            "Time to answer an HTTP request (a WebSocket counts until it closes)",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sockets = Gauge("dc_gateway_sockets", "Open WebSockets", registry=r)
        self.hubs = Gauge(
            "dc_gateway_thread_hubs",
            "Threads with sockets here (one upstream subscription each)",
            registry=r,
        )
        self.feeds = Gauge(
            "dc_gateway_fanout_feeds",
            "Sessions (and signed-in users) with gRPC fan-out streams here (one upstream each)",
            registry=r,
        )
        self.dropped_sockets = Counter(
            "dc_gateway_dropped_sockets",
            "WebSockets closed with 1013: over WS_SEND_QUEUE frames or WS_SEND_QUEUE_BYTES behind",
            registry=r,
        )

    def watch(self, sockets: Callable[[], float], hubs: Callable[[], float]) -> None:
        """Gauges read at scrape time."""
        self.sockets.set_function(sockets)
        self.hubs.set_function(hubs)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Counts every request under its route pattern (never the raw path: ids are unbounded)."""
        started = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.requests.labels(route, request.method, str(status)).inc()
            self.latency.labels(route).observe(time.perf_counter() - started)

    async def serve(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
