"""Repeated runs of one load level merged into one row, and the fan-out's delivery lag; pure.

A merged row holds each numeric measure's median over the runs, `runs`, the spread
(`<measure>_spread`: min and max) of the measures named, and the sum of `incomplete`: one bad
run shows however good the median is.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Row = dict[str, Any]


def merge(rows: Sequence[Row], spread: Sequence[str] = ()) -> Row:
    """One row from the runs of one level (same keys; non-numbers taken from the first)."""
    merged: Row = {}
    for key, value in rows[0].items():
        values = [r[key] for r in rows if key in r]
        if key == "incomplete":
            merged[key] = sum(values)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            median = statistics.median(values)
            merged[key] = round(median, 2) if isinstance(median, float) else median
        else:
            merged[key] = value
        if key in spread:
            merged[f"{key}_spread"] = {"min": min(values), "max": max(values)}
    merged["runs"] = len(rows)
    return merged


async def repeated(
    fn: Callable[[int, int], Awaitable[Row]], level: int, runs: int, spread: Sequence[str]
) -> Row:
    """`fn(level, k)` for k in range(runs), one after another, merged."""
    return merge([await fn(level, k) for k in range(runs)], spread)


def with_delivery_lag(rows: list[Row]) -> list[Row]:
    """Each fan-out row with `delivery_lag_ms`: its last [DONE] minus that of the smallest level
    (one subscriber in `make bench`): what N subscribers add to delivering one answer."""
    if not rows:
        return rows
    first = min(rows, key=lambda r: r["subscribers"])
    base = first["last_done_ms"]
    return [
        {**r, "delivery_lag_ms": round(r["last_done_ms"] - base, 1), "lag_vs": first["subscribers"]}
        for r in rows
    ]
