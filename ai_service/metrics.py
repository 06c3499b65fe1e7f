"""The AI service's Prometheus metrics (besides the per-RPC ones of common/metrics.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

FIRST_CHUNK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        self.first_chunk_seconds = Histogram(
            "dc_ai_first_chunk_seconds",
            "Time from a Generate call to the model's first text chunk",
            buckets=FIRST_CHUNK_BUCKETS,
            registry=r,
        )
        self.chunks = Counter("dc_ai_chunks", "Model text chunks streamed to callers", registry=r)
        self.regenerated_chunks = Counter(
            "dc_ai_regenerated_chunks",
            "Chunks sent for an answer that a later call for it generated again",
            registry=r,
        )
