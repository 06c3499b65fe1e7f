"""i) REST append throughput: `POST /api/chat/session/{id}/messages` from `sessions` workers, each
on its own session as its own user, one request after another, for `seconds` per run.

A warm-up run (WARM_UP_S, on the same sessions, so each is claimed and active) is left out;
then `runs` runs. Latency percentiles pool every run's samples (the tail is named by the
samples, bench/stats.py); the spread is each run's own rate and tail; CPU per append is each
process's CPU over the run divided by the appends acknowledged (median of runs). A reply other
than 2xx is counted in `failed` (and its status kept), never retried.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.stats import latency_ms, tail_ms
from bench.target import Target

SESSIONS = 100
WARM_UP_S = 1.0
CONTENT = "x" * 80


@dataclass
class Run:
    samples: list[float] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)


async def one_run(
    target: Target, http: aiohttp.ClientSession, threads: list[str], seconds: float
) -> Run:
    run = Run()
    deadline = time.monotonic() + seconds
    credentials = target.credentials

    async def worker(i: int, thread: str) -> None:
        url = f"{target.gateway_url}/api/chat/session/{thread}/messages"
        headers = credentials.headers(f"bench-{i}")
        k = 0
        while time.monotonic() < deadline:
            k += 1
            body = {"role": "user", "content": CONTENT, "clientMessageId": f"{time.time_ns()}-{k}"}
            sent = time.monotonic()
            async with http.post(url, json=body, headers=headers) as reply:
                await reply.read()
                if reply.status >= 300:
                    run.failed[str(reply.status)] += 1
                    continue
            run.samples.append(time.monotonic() - sent)

    for i in range(len(threads)):
        credentials.headers(f"bench-{i}")  # minted outside the measured window
    before = target.cpu_all()
    started = time.monotonic()
    await asyncio.gather(*(worker(i, t) for i, t in enumerate(threads)))
    run.elapsed_s = time.monotonic() - started
    run.cpu = target.cpu_us_per(before, len(run.samples), "append")
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
    http: aiohttp.ClientSession,
    run: str,
    seconds: float,
    runs: int,
    sessions: int = SESSIONS,
    tick: Any = None,
) -> dict[str, Any]:
    """The scenario's row: a warm-up, then `runs` runs of `seconds` each."""
    threads = [f"{run}-rest{sessions}-{i}" for i in range(sessions)]
    await one_run(target, http, threads, WARM_UP_S)
    measured = []
    for _ in range(runs):
        measured.append(await one_run(target, http, threads, seconds))
        if tick is not None:
            tick()
    return summarise(sessions, measured)
