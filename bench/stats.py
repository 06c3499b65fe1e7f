"""Summaries of measured samples; pure.

A tail is named for what the samples can carry: "p99" needs at least P99_SAMPLES samples (or
P99_RUNS runs pooled), else the same figure is reported as "p95" (at least P95_SAMPLES) or
"max"; a report never calls a p99 what 20 samples cannot tell apart from their maximum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

P99_SAMPLES = 200
P99_RUNS = 5
P95_SAMPLES = 20


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0.0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def tail_name(samples: int, runs: int = 1) -> str:
    """The highest tail percentile `samples` (pooled over `runs`) may be called."""
    if samples >= P99_SAMPLES or (runs >= P99_RUNS and samples >= runs):
        return "p99"
    return "p95" if samples >= P95_SAMPLES else "max"


TAIL_Q = {"p99": 99.0, "p95": 95.0, "max": 100.0}


def tail_ms(samples_s: Sequence[float], runs: int = 1) -> tuple[str, float]:
    """(name, value in ms) of the tail the samples can carry (see tail_name)."""
    name = tail_name(len(samples_s), runs)
    return name, round(percentile(samples_s, TAIL_Q[name]) * 1000, 2)


def latency_ms(samples_s: Sequence[float], runs: int = 1) -> dict[str, float]:
    """p50, the tail they can carry (p95 and p99, or fewer) and max, as milliseconds."""
    found = {"p50_ms": round(percentile(samples_s, 50) * 1000, 2)}
    name = tail_name(len(samples_s), runs)
    for label in ("p95", "p99")[: ("max", "p95", "p99").index(name)]:
        found[f"{label}_ms"] = round(percentile(samples_s, TAIL_Q[label]) * 1000, 2)
    found["max_ms"] = round(percentile(samples_s, 100) * 1000, 2)
    return found


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


def percentiles_ms(name: str, samples_s: Sequence[float], runs: int = 1) -> dict[str, float]:
    """`name`_p50_ms, the tail the samples can carry (`name`_p99_ms, or _p95_ms, or none) and
    `name`_max_ms of samples in seconds, with the sample count."""
    found: dict[str, float] = {
        f"{name}_samples": len(samples_s),
        f"{name}_p50_ms": round(percentile(samples_s, 50) * 1000, 1),
    }
    tail = tail_name(len(samples_s), runs)
    if tail != "max":
        found[f"{name}_{tail}_ms"] = round(percentile(samples_s, TAIL_Q[tail]) * 1000, 1)
    found[f"{name}_max_ms"] = round(percentile(samples_s, 100) * 1000, 1)
    return found
