"""Prometheus plumbing the services share: a gRPC server interceptor counting calls by method and
status code (with a latency histogram for unary calls), and the HTTP endpoint for the gRPC
services. Each service defines its own domain metrics in its own `metrics.py`, into one
`CollectorRegistry` per process (built at start-up, never at import).

Metric names start with `dc_`. An endpoint serves the registry in the Prometheus text format at
any path (`/metrics` by convention).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GrpcMetrics(grpc.aio.ServerInterceptor):
    """Counts every unary and server-streaming call when it ends: `dc_grpc_requests_total`
    {method, code}; unary calls also feed `dc_grpc_latency_seconds` {method}."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "dc_grpc_requests",
            "gRPC calls handled, by full method name and status code",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "dc_grpc_latency_seconds",
            "Time to handle a unary gRPC call",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        details = handler_call_details
        handler = await continuation(details)
        method = str(details.method)
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(self, method: str, behavior: Any) -> Any:
        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            try:
                reply = await behavior(request, context)
            except BaseException:
                self._count(method, context, failed=True)
                raise
            finally:
                self.latency.labels(method).observe(time.perf_counter() - started)
            self._count(method, context, failed=False)
            return reply

        return unary

    def _stream(self, method: str, behavior: Any) -> Any:
        if not inspect.isasyncgenfunction(behavior):
            # A handler that writes with `context.write` and returns (grpc's health Watch).
            async def writer(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
                try:
                    await behavior(request, context)
                except asyncio.CancelledError:
                    self.requests.labels(method, "CANCELLED").inc()  # the caller went away
                    raise
                except BaseException:
                    self._count(method, context, failed=True)
                    raise
                self._count(method, context, failed=False)

            return writer

        async def stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            try:
                # aclosing: the handler's own `finally` (unsubscribe) runs when we are closed.
                async with contextlib.aclosing(behavior(request, context)) as replies:
                    async for reply in replies:
                        yield reply
            except (asyncio.CancelledError, GeneratorExit):
                self.requests.labels(method, "CANCELLED").inc()  # the caller went away
                raise
            except BaseException:
                self._count(method, context, failed=True)
                raise
            else:
                self._count(method, context, failed=False)

        return stream

    def _count(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any], *, failed: bool
    ) -> None:
        code = context.code()
        if isinstance(code, grpc.StatusCode):
            name = code.name
        else:
            name = "CANCELLED" if failed and context.cancelled() else "UNKNOWN" if failed else "OK"
        self.requests.labels(method, name).inc()


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> Callable[[], None]:
    """Serves the registry over HTTP on a daemon thread; returns the function that stops it."""
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        thread.join(5)

    return stop
