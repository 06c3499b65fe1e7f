"""h) N concurrent paced answers, one WebSocket each, on a stack of its own (`make bench`, or
`python -m bench.paced` alone): first-token and inter-frame gap percentiles, answers whole, wall
time, CPU per streamed token of every process (ours, the dev model, the load client itself).
`make bench` runs N = 100 / 250 / 500 / 1,000 in each configuration (bench/configs.py).

The dev model streams 250 tokens at DEV_MODEL_TOKEN_DELAY_MS=20 (50 tokens/s: an answer takes
5 s when nothing waits), as a person would see a hosted model. Each of the N sockets has a
thread of its own; all N are connected (their sessions activated) before the prompts go out, so
a run measures answering, not connecting. A first run of at most 50 answers warms the stack
up and is left out; each level then runs `runs` times on fresh threads. Percentiles pool the
samples of all runs of a level (N first tokens and N x frames gaps per run); the spread is
each run's own figure, min and max. CPU is read from /proc around each run and divided by the
tokens streamed (N x tokens): per process and summed over ours (AI service, session pod,
gateway, Redis, search indexer; the dev model is the stand-in for a remote model and is left
out of the sum). An answer whose first token never came counts at the run's whole wait (a
lower bound) and in `no_first_token`. A tail is called p99 only when the pooled samples allow
it (bench/stats.py); the spread is each run's own tail, named by that run's sample count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import environment
from bench.configs import AUTH_OFF, CONFIGS, BenchConfig
from bench.paced_load import RunResult, one_run
from bench.profiles import Recorders
from bench.stats import percentiles_ms
from bench.target import OURS, ROLES, OwnStack, Target

TOKENS = 250
TOKEN_DELAY_MS = 20
LEVELS = (100, 250, 500, 1000)
SMALL_LEVELS = (100, 250)
RUNS = 3
WARM_UP_ANSWERS = 50


@dataclass(frozen=True)
class Plan:
    levels: tuple[int, ...] = LEVELS
    runs: int = RUNS
    tokens: int = TOKENS
    token_delay_ms: int = TOKEN_DELAY_MS
    profile_dir: Path | None = None
    """py-spy flame graphs of every Python process during the last run of the largest level."""
    pod_env: tuple[tuple[str, str], ...] = ()
    ai_env: tuple[tuple[str, str], ...] = ()
    config: BenchConfig = AUTH_OFF


QUICK = Plan(levels=(10,), runs=1, tokens=50)


def spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 1), "max": round(max(values), 1)}


def tail_spread(what: str, runs: list[RunResult]) -> dict[str, Any]:
    """`what`_<tail>_ms_spread: each run's own tail, min and max (named by the smallest run)."""
    tails = [r.tail_ms(what) for r in runs]
    name = min((t[0] for t in tails), key=("max", "p95", "p99").index)
    return {f"{what}_{name}_ms_spread": spread([v for _, v in tails])}


def summarise(n: int, tokens: int, runs: list[RunResult]) -> dict[str, Any]:
    """One level's row: pooled percentiles, per-run spread, CPU per token (median of runs)."""
    first = [s for r in runs for s in r.first_token_s]
    gaps = [s for r in runs for s in r.gaps_s]
    row: dict[str, Any] = {
        "answers": n,
        "runs": len(runs),
        "tokens": tokens,
        "load_clients": max(r.clients for r in runs),
        "client_core_share_max": round(max(r.client_core_share for r in runs), 2),
        **percentiles_ms("first_token", first, len(runs)),
        "no_first_token": sum(r.no_first_token for r in runs),
        **percentiles_ms("gap", gaps, len(runs)),
        "whole": f"{sum(r.whole for r in runs)}/{n * len(runs)}",
        "incomplete": sum(n - r.whole for r in runs),
        "errors": dict(sum((Counter(r.errors) for r in runs), Counter())),
        "wall_s": round(statistics.median(r.wall_s for r in runs), 2),
        "wall_s_spread": spread([r.wall_s for r in runs]),
        **tail_spread("first_token", runs),
        **tail_spread("gap", runs),
        "delivery_tokens_per_s": round(statistics.median(r.tokens_per_s for r in runs), 1),
    }
    for role in (*ROLES, "client"):
        values = [r.cpu_us_per_token[role] for r in runs if role in r.cpu_us_per_token]
        if values:
            row[f"cpu_us_per_token_{role}"] = round(statistics.median(values), 1)
    ours = [sum(r.cpu_us_per_token.get(role, 0.0) for role in OURS) for r in runs]
    row["cpu_us_per_token_ours"] = round(statistics.median(ours), 1)
    row["cpu_us_per_token_ours_spread"] = spread(ours)
    row["load_avg_1m"] = [r.load_before for r in runs]
    return row


async def run_plan(target: Target, plan: Plan, tick: Any = None) -> list[dict[str, Any]]:
    tag = f"paced{time.time_ns() % 10**10}"
    rows = []
    pace_s = plan.tokens * plan.token_delay_ms / 1000
    warm_up = min(WARM_UP_ANSWERS, *plan.levels)
    await one_run(target, warm_up, plan.tokens, f"{tag}-warm", pace_s)
    for n in plan.levels:
        runs = []
        for k in range(plan.runs):
            last = n == max(plan.levels) and k == plan.runs - 1
            profiling = plan.profile_dir is not None and last
            with Recorders(target.pids, plan.profile_dir if profiling else None, n):
                runs.append(await one_run(target, n, plan.tokens, f"{tag}-{n}-{k}", pace_s))
            if tick is not None:
                tick()
        rows.append(summarise(n, plan.tokens, runs))
    return rows


async def main(plan: Plan, tick: Any = None) -> dict[str, Any]:
    """Starts a stack paced at `plan.token_delay_ms`, runs every level, stops the stack."""
    own = OwnStack(
        plan.token_delay_ms,
        config=plan.config,
        pod_env=dict(plan.pod_env),
        ai_env=dict(plan.ai_env),
    )
    try:
        target = await asyncio.to_thread(own.start)
        settings = environment.settings(target.pids)
        rows = await run_plan(target, plan, tick)
    finally:
        own.close()
    extra = {"tokens_per_answer": plan.tokens}
    return {**environment.describe(), "settings": {**settings, **extra}, "levels": rows}


def pairs(values: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(v.split("=", 1)) for v in values)  # type: ignore[misc]


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--config", choices=sorted(CONFIGS), default=AUTH_OFF.name)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--tokens", type=int, default=TOKENS)
    parser.add_argument("--profile", type=Path, help="write py-spy flame graphs here")
    parser.add_argument("--pod-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--ai-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    environment.raise_open_files_limit()
    levels = tuple(int(x) for x in args.levels.split(","))
    plan = Plan(
        config=CONFIGS[args.config],
        levels=levels,
        runs=args.runs,
        tokens=args.tokens,
        profile_dir=args.profile,
        pod_env=pairs(args.pod_env),
        ai_env=pairs(args.ai_env),
    )
    result = asyncio.run(main(plan))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    cli()
