"""i) REST append throughput: `POST /api/chat/session/{id}/messages` from `sessions` workers, each
on its own session as its own user, one request after another, for `seconds` per run.

The workers are split over one load-client process per core (bench/rest_client.py), each
ready (its sessions claimed, its connections open) before the clock starts. A warm-up run
(WARM_UP_S, on the same sessions) is left out; then `runs` runs. Latency percentiles pool every
run's samples (the tail is named by the samples, bench/stats.py); the spread is each run's own
rate and tail; CPU per append is each process's CPU over the run divided by the appends
acknowledged (median of runs), the load clients' too (`client_core_share`: the busiest
client's CPU as a share of one core; near 1.0 the client, not the system, set the rate). A
reply other than 2xx is counted in `failed` (and its status kept), never retried.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.load_clients import client_count, run_clients, split
from bench.stats import latency_ms, tail_ms
from bench.target import Target

SESSIONS = 100
WARM_UP_S = 1.0


@dataclass
class Run:
    samples: list[float] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)


async def one_run(target: Target, threads: list[str], seconds: float) -> Run:
    """The sessions split over one client process per core (bench/rest_client.py)."""
    sessions = [(thread, f"bench-{i}") for i, thread in enumerate(threads)]
    base = {
        "gateway_url": target.gateway_url,
        "auth_secret": target.credentials.hex(),
        "seconds": seconds,
    }
    readings: dict[str, Any] = {}

    def before_go() -> None:
        readings["cpu"] = target.cpu_all()
        readings["started"] = time.monotonic()

    count = client_count(len(sessions))
    jobs = [{**base, "sessions": part} for part in split(sessions, count)]
    reports = await run_clients("bench.rest_client", jobs, before_go)
    run = Run()
    for report in reports:
        run.samples += report["samples"]
        run.failed.update(report["failed"])
    run.elapsed_s = max(r["ended"] for r in reports) - readings["started"]
    run.cpu = target.cpu_us_per(readings["cpu"], len(run.samples), "append")
    client_s = sum(r["cpu_s"] for r in reports)
    if run.samples:
        run.cpu["cpu_us_per_append_client"] = round(client_s / len(run.samples) * 1e6, 1)
    busiest = max(r["cpu_s"] for r in reports)
    run.cpu["client_core_share"] = round(busiest / run.elapsed_s, 2)
    return run


def summarise(sessions: int, runs: list[Run]) -> dict[str, Any]:
    pooled = [s for r in runs for s in r.samples]
    rates = [len(r.samples) / r.elapsed_s for r in runs]
    tails = [tail_ms(r.samples) for r in runs]
    tail = min((name for name, _ in tails), key=("max", "p95", "p99").index)
    row: dict[str, Any] = {
        "sessions": sessions,
        "runs": len(runs),
        "appends": len(pooled),
        "appends_per_s": round(statistics.median(rates), 1),
        "appends_per_s_spread": {"min": round(min(rates), 1), "max": round(max(rates), 1)},
        **latency_ms(pooled, len(runs)),
        f"{tail}_ms_spread": {
            "min": min(v for _, v in tails),
            "max": max(v for _, v in tails),
        },
        "failed": dict(sum((r.failed for r in runs), Counter())),
        "incomplete": sum(sum(r.failed.values()) for r in runs),
    }
    for key in runs[0].cpu:
        values = [r.cpu[key] for r in runs if key in r.cpu]
        row[key] = round(statistics.median(values), 1)
    return row


async def appends(
    target: Target,
    run: str,
    seconds: float,
    runs: int,
    sessions: int = SESSIONS,
    tick: Any = None,
) -> dict[str, Any]:
    """The scenario's row: a warm-up, then `runs` runs of `seconds` each."""
    threads = [f"{run}-rest{sessions}-{i}" for i in range(sessions)]
    await one_run(target, threads, WARM_UP_S)
    measured = []
    for _ in range(runs):
        measured.append(await one_run(target, threads, seconds))
        if tick is not None:
            tick()
    return summarise(sessions, measured)
