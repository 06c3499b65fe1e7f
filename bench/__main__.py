"""`make bench`: load scenarios a) to g) plus machine baselines; JSON, table and plots.

Runs against `make run` when it is up (gateway at --url, session service at --grpc, PIDs from
RUN_DIR for CPU and memory figures), else against a stack of its own on free ports. Scenario f
always starts its own 3-pod cluster (it kills pods). `--quick` is a small smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from tqdm import tqdm

from bench import baseline, cluster, environment, grpc_load, paced, report, ws_load
from bench.target import ROOT, OwnStack, Target, from_run_dir, listening

RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Sizes:
    levels: tuple[int, ...]  # concurrent sessions for a) and g)
    seconds: float  # per level of a) and g)
    history_calls: int
    fan_out: tuple[int, ...]  # subscribers for c) and g)
    tokens: int
    idle: tuple[int, ...]
    cold: int
    kills: int
    redis_requests: int
    echo_seconds: float
    paced: paced.Plan


FULL = Sizes(
    (1, 10, 100), 5, 50, (1, 10, 100, 1000), 500, (1000, 5000), 20, 5, 50_000, 5, paced.Plan()
)
QUICK = Sizes((1, 10), 1, 5, (1, 10), 50, (50, 100), 3, 1, 2_000, 1, paced.QUICK)
SCENARIOS = 12
OWN_STACK_SCENARIOS = {"f", "h", "f_kill9_takeover", "h_paced_answers"}
"""Scenarios that start stacks of their own (a cluster to kill, a paced dev model)."""


def anonymous(url: str) -> bool:
    """True when the system takes calls without tokens (AUTH_MODE=off)."""
    try:
        with urllib.request.urlopen(f"{url}/api/me", timeout=2) as reply:
            return bool(json.loads(reply.read()).get("auth") == "off")
    except (OSError, ValueError):
        return False


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


async def levels(fn: Callable[[int], Awaitable[Any]], xs: tuple[int, ...]) -> list[Any]:
    """One run of `fn` per load level, one after another."""
    return [await fn(x) for x in xs]


async def scenarios(
    target: Target | None, sizes: Sizes, bar: tqdm[Any], only: set[str]
) -> dict[str, Any]:
    run = f"bench{time.time_ns() % 10**10}"
    out: dict[str, Any] = {}

    async def step(key: str, label: str, work: Callable[[], Awaitable[Any]]) -> None:
        if only and key[0] not in only and key not in only:
            return
        bar.set_description(label)
        out[key] = await work()
        bar.update(1)

    await step("f_kill9_takeover", "f) kill -9 takeover", lambda: cluster.main(sizes.kills))
    await step("h_paced_answers", "h) paced answers", lambda: paced.main(sizes.paced))
    if target is None:
        return out
    # No pool limit: every open WebSocket holds a connection of its own.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await step(
            "a_prompt_round_trip_ws",
            "a) WS round trips",
            lambda: levels(
                lambda c: ws_load.prompt_round_trips(target, http, c, sizes.seconds, run),
                sizes.levels,
            ),
        )
        await step(
            "b_history_ws",
            "b) history",
            lambda: ws_load.history(target, http, sizes.history_calls, run),
        )
        await step(
            "c_fan_out_ws",
            "c) WS fan-out",
            lambda: levels(
                lambda n: ws_load.fan_out(target, http, n, sizes.tokens, run), sizes.fan_out
            ),
        )
        await step(
            "d_idle_sockets",
            "d) idle sockets",
            lambda: levels(lambda n: ws_load.idle_sockets(target, http, n, run), sizes.idle),
        )
        await step(
            "e_cold_connect_ws",
            "e) cold connects",
            lambda: ws_load.cold_connects(target, http, sizes.cold, run),
        )
    await step(
        "g_prompt_round_trip_grpc",
        "g) gRPC round trips",
        lambda: levels(
            lambda c: grpc_load.prompt_round_trips(target, c, sizes.seconds, run), sizes.levels
        ),
    )
    await step(
        "g_fan_out_grpc",
        "g) gRPC fan-out",
        lambda: levels(lambda n: grpc_load.fan_out(target, n, sizes.tokens, run), sizes.fan_out),
    )
    if target.envoy_url:
        web_levels = grpc_load.WEB_FAN_OUT_QUICK if sizes is QUICK else grpc_load.WEB_FAN_OUT
        await step(
            "g_fan_out_grpc_web_envoy",
            "g) gRPC-web fan-out via Envoy",
            lambda: levels(
                lambda n: grpc_load.fan_out_grpc_web(
                    target, target.envoy_url, n, sizes.tokens, run
                ),
                web_levels,
            ),
        )
    await step(
        "baseline_redis",
        "machine: redis-benchmark",
        lambda: baseline.redis_fsync_always(sizes.redis_requests),
    )
    await step(
        "baseline_grpc_echo", "machine: gRPC echo", lambda: baseline.grpc_echo(sizes.echo_seconds)
    )
    return out


def fractions(found: dict[str, Any]) -> dict[str, Any]:
    """Our best round-trip rates as a share of the machine's raw rates."""
    shares: dict[str, Any] = {}
    redis = found.get("baseline_redis", {}).get("set_ops_per_s")
    echo = found.get("baseline_grpc_echo", {}).get("ops_per_s")
    ws = max((r["ops_per_s"] for r in found.get("a_prompt_round_trip_ws", [])), default=None)
    rpc = max((r["ops_per_s"] for r in found.get("g_prompt_round_trip_grpc", [])), default=None)
    if redis and ws:
        shares["ws_round_trips_per_redis_set"] = round(ws / redis, 3)
    if redis and rpc:
        shares["grpc_round_trips_per_redis_set"] = round(rpc / redis, 3)
    if echo and rpc:
        shares["grpc_round_trips_per_echo_call"] = round(rpc / echo, 3)
    return shares


async def main(args: argparse.Namespace) -> int:
    environment.raise_open_files_limit()
    sizes = QUICK if args.quick else FULL
    if args.paced_big:
        sizes = replace(sizes, paced=replace(sizes.paced, levels=paced.BIG_LEVELS))
    if args.paced_runs:
        sizes = replace(sizes, paced=replace(sizes.paced, runs=args.paced_runs))
    only = set(args.only.split(",")) if args.only else set()
    own: OwnStack | None = None
    target: Target | None = None
    running = not args.own and listening(args.grpc) and healthy(args.url)
    if only and only <= OWN_STACK_SCENARIOS:
        pass  # no shared stack needed
    elif running and anonymous(args.url):
        target = from_run_dir(args.url, args.grpc, Path(args.run_dir))
        if listening(args.envoy.removeprefix("http://")):
            target.envoy_url = args.envoy
    else:
        if running:  # per-user limits and one stream per user would measure the limits
            print("the running system requires tokens (start it with AUTH_MODE=off make run to")
            print("bench it): starting a stack of our own without access control")
        elif not args.own:
            print(f"nothing serves {args.url} and {args.grpc}: starting a stack of our own")
        own = OwnStack(envoy=True)  # g) through Envoy
        target = await asyncio.to_thread(own.start)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        with tqdm(total=SCENARIOS, unit="scenario", leave=False) as bar:
            found = await scenarios(target, sizes, bar, only)
    finally:
        if own is not None:
            own.close()
    results = {
        **environment.describe(),
        "started": started,
        "target": (target.description or f"{args.url} + {args.grpc}") if target else "own stacks",
        "quick": args.quick,
        "scenarios": found,
        "fractions": fractions(found),
    }
    files = report.write(results, Path(args.out))
    print(report.table(results))
    print("written: " + ", ".join(str(f) for f in files))
    return 0


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    port = os.environ.get("GATEWAY_PORT", "8080")
    parser.add_argument("--url", default=f"http://127.0.0.1:{port}", help="the gateway")
    parser.add_argument(
        "--grpc",
        default=f"127.0.0.1:{os.environ.get('SESSION_PORT', '50051')}",
        help="a session pod",
    )
    parser.add_argument(
        "--envoy",
        default=f"http://127.0.0.1:{os.environ.get('ENVOY_PORT', '8000')}",
        help="Envoy in front of the gateway (gRPC-web fan-out)",
    )
    parser.add_argument("--run-dir", default=os.environ.get("RUN_DIR", str(ROOT / ".run")))
    parser.add_argument("--own", action="store_true", help="always start a stack of our own")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--only", default="", help="comma-separated scenario letters or keys")
    parser.add_argument(
        "--paced-big", action="store_true", help=f"h) at N = {paced.BIG_LEVELS}, not {paced.LEVELS}"
    )
    parser.add_argument("--paced-runs", type=int, default=0, help="h) runs per level")
    parser.add_argument("--out", default=str(RESULTS))
    raise SystemExit(asyncio.run(main(parser.parse_args())))


if __name__ == "__main__":
    cli()
