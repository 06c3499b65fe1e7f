"""Summaries of measured samples; pure."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0.0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of samples in seconds, as milliseconds."""
    return {
        f"{name}_ms": round(percentile(samples_s, q) * 1000, 2)
        for name, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
    }


def round_trips(
    concurrency: int, samples_s: Sequence[float], elapsed_s: float, incomplete: int
) -> dict[str, float]:
    """The row of a round-trip scenario: rate, latency percentiles, failures."""
    return {
        "concurrency": concurrency,
        "round_trips": len(samples_s),
        "ops_per_s": round(len(samples_s) / elapsed_s, 1),
        **latency_ms(samples_s),
        "incomplete": incomplete,
    }


def percentiles_ms(name: str, samples_s: Sequence[float]) -> dict[str, float]:
    """`name`_p50_ms, _p99_ms and _max_ms of samples in seconds, with the sample count."""
    return {
        f"{name}_samples": len(samples_s),
        **{
            f"{name}_{label}_ms": round(percentile(samples_s, q) * 1000, 1)
            for label, q in (("p50", 50), ("p99", 99), ("max", 100))
        },
    }
