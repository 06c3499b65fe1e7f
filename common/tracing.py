"""OpenTelemetry tracing across gateway → session pod → AI service, off by default.

`OTEL_TRACES_EXPORTER` turns it on: `otlp` (OTLP over gRPC; the standard `OTEL_EXPORTER_OTLP_*`
variables say where, default localhost:4317) or `console` (one JSON span per line on stderr, for
debugging and tests). Unset or `none`: no spans are recorded, no interceptors are installed,
and nothing is exported. When on, every gRPC call carries the W3C `traceparent` header, so one
prompt is one trace, and every log line written inside a span carries its `trace_id`
(common/logs.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

EXPORTERS = ("none", "otlp", "console")


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("OTEL_TRACES_EXPORTER", "none") != "none"


def setup_tracing(service: str, environ: Mapping[str, str] = os.environ) -> Callable[[], None]:
    """Installs the process's tracer provider when tracing is on; returns its shutdown (which
    flushes the spans not yet exported). Raises ValueError for an unknown exporter name."""
    name = environ.get("OTEL_TRACES_EXPORTER", "none")
    if name not in EXPORTERS:
        raise ValueError(f"OTEL_TRACES_EXPORTER must be one of {EXPORTERS}, got {name!r}")
    if name == "none":
        return lambda: None
    exporter: SpanExporter
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter(out=sys.stderr, formatter=_one_line)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider.shutdown


def _one_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


def server_interceptors() -> list[Any]:
    """gRPC server interceptors that continue the caller's trace (none when tracing is off)."""
    if not enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]  # type: ignore[no-untyped-call]


def client_interceptors() -> list[Any]:
    """gRPC client interceptors that start a span per call and send `traceparent`."""
    if not enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]


def current_trace_id() -> str:
    """The current span's trace id as 32 hex digits, or "" outside any recorded span."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
