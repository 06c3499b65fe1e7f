"""Which scenario runs on which stack, in `make bench`'s order; each result under its key.

Per configuration (bench/configs.py): h) paced answers on a stack of its own; then d) idle
sockets on a fresh stack per level (memory after other scenarios would count their leftovers:
the first level on the shared stack before anything else ran on it, when the bench started it),
then a), b), c), e), i) and, with access control off, g) on the shared target. Once per bench
(the first configuration): f) on a 3-pod cluster of its own, j) and the machine baselines.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from tqdm import tqdm

from bench import baseline, cluster, grpc_load, paced, rest_load, ws_load
from bench.configs import BenchConfig
from bench.repeats import repeated, with_delivery_lag
from bench.target import OwnStack, Target
from deploy.stack.envoy import ENVOY

ACTIVATION = "bench.activation"
"""Scenario j), activation of a long thread, where that module exists (issue 17's point 3)."""
ONCE = ("f_kill9_takeover", "j_activation", "baseline_redis", "baseline_grpc_echo")
PER_CONFIG = (
    "h_paced_answers",
    "d_idle_sockets",
    "a_prompt_round_trip_ws",
    "b_history_ws",
    "c_fan_out_ws",
    "e_cold_connect_ws",
    "i_rest_appends",
)
WEB_FAN_OUT = getattr(grpc_load, "fan_out_grpc_web", None)
"""g) over gRPC-web through Envoy (the gateway's fan-out), where bench/grpc_load.py has it."""
AUTH_OFF_ONLY = (
    "g_prompt_round_trip_grpc",
    "g_fan_out_grpc",
    *(["g_fan_out_grpc_web_envoy"] if WEB_FAN_OUT is not None and Path(ENVOY).exists() else []),
)
"""The gRPC load clients call without tokens (bench/grpc_load.py)."""
ON_TARGET = (*PER_CONFIG[1:], *AUTH_OFF_ONLY)
"""The scenarios that need the shared target; the others start stacks of their own."""


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
    rest_sessions: int = rest_load.SESSIONS
    rest_seconds: float = 5.0
    rest_runs: int = 5
    web_fan_out: tuple[int, ...] = (1, 1000, 5000)
    """Subscribers for g) over gRPC-web through Envoy."""
    fan_out_runs: int = 3
    """c) and g) fan-out: answers per level (after one warm-up answer), merged by median."""
    activation: tuple[int, int] = (1000, 7)
    """j): answered prompts in the thread, activations timed."""


FULL = Sizes(
    (1, 10, 100), 5, 50, (1, 10, 100, 1000), 500, (1000, 5000), 20, 5, 50_000, 5, paced.Plan()
)
QUICK = Sizes(
    (1, 10),
    1,
    5,
    (1, 10),
    50,
    (100,),
    3,
    1,
    2_000,
    1,
    paced.QUICK,
    rest_sessions=10,
    rest_seconds=1.0,
    rest_runs=1,
    web_fan_out=(1, 10),
    fan_out_runs=1,
    activation=(80, 2),  # 240 log entries: past snapshot.WINDOW_EVENTS, so one is stored
)
FAN_OUT_SPREAD = ("tokens_per_s_delivered", "last_done_ms")


def selector(only: str) -> Callable[[str], bool]:
    """`--only`'s comma-separated letters (`h`, `baseline`) or keys, as a test of a key."""
    chosen = {x for x in only.split(",") if x}
    return lambda key: not chosen or key in chosen or key.split("_")[0] in chosen


def have_activation() -> bool:
    return importlib.util.find_spec(ACTIVATION) is not None


def count(configs: list[BenchConfig], selected: Callable[[str], bool]) -> int:
    """How many steps the progress bar will see."""
    per = [k for k in PER_CONFIG if selected(k)]
    off = [k for k in AUTH_OFF_ONLY if selected(k)]
    once_ = [k for k in ONCE if selected(k) and (k != "j_activation" or have_activation())]
    return len(once_) + sum(len(per) + (0 if c.auth else len(off)) for c in configs)


async def levels(fn: Callable[[int], Awaitable[Any]], xs: tuple[int, ...]) -> list[Any]:
    """One run of `fn` per load level, one after another."""
    return [await fn(x) for x in xs]


async def idle_on_fresh_stack(config: BenchConfig, sockets: int, run: str) -> dict[str, Any]:
    """d) on a stack started for it alone, stopped afterwards."""
    own = OwnStack(config=config)
    try:
        target = await asyncio.to_thread(own.start)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            return await ws_load.idle_sockets(target, http, sockets, run)
    finally:
        own.close()


Step = Callable[[str, str, Callable[[], Awaitable[Any]]], Awaitable[None]]


def stepper(out: dict[str, Any], bar: tqdm[Any], selected: Callable[[str], bool]) -> Step:
    async def step(key: str, label: str, work: Callable[[], Awaitable[Any]]) -> None:
        if not selected(key):
            return
        bar.set_description(label)
        out[key] = await work()
        bar.update(1)

    return step


async def once(sizes: Sizes, step: Step) -> None:
    await step("f_kill9_takeover", "f) kill -9 takeover", lambda: cluster.main(sizes.kills))
    if have_activation():
        module: Any = importlib.import_module(ACTIVATION)
        await step(
            "j_activation",
            "j) activation of a long thread",
            lambda: asyncio.to_thread(module.main, *sizes.activation),
        )
    await step(
        "baseline_redis",
        "machine: redis-benchmark",
        lambda: baseline.redis_fsync_always(sizes.redis_requests),
    )
    await step(
        "baseline_grpc_echo", "machine: gRPC echo", lambda: baseline.grpc_echo(sizes.echo_seconds)
    )


async def own_stacks(config: BenchConfig, sizes: Sizes, step: Step) -> None:
    """The scenarios of this configuration that start stacks of their own."""
    plan = replace(sizes.paced, config=config)
    await step("h_paced_answers", f"{config.name}: h) paced answers", lambda: paced.main(plan))


async def on_target(
    config: BenchConfig, target: Target, fresh: bool, sizes: Sizes, step: Step
) -> None:
    """The scenarios of one configuration on its shared target; `fresh`: the bench started
    it and nothing ran on it yet."""
    run = f"bench{time.time_ns() % 10**10}"
    name = target.config or "target"
    # No pool limit: every open WebSocket holds a connection of its own.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def idle() -> list[dict[str, Any]]:
            rows = []
            for k, n in enumerate(sizes.idle):
                if k == 0 and fresh:
                    rows.append(await ws_load.idle_sockets(target, http, n, run))
                else:
                    rows.append(await idle_on_fresh_stack(config, n, run))
            return rows

        await step("d_idle_sockets", f"{name}: d) idle sockets", idle)
        await step(
            "a_prompt_round_trip_ws",
            f"{name}: a) WS round trips",
            lambda: levels(
                lambda c: ws_load.prompt_round_trips(target, http, c, sizes.seconds, run),
                sizes.levels,
            ),
        )
        await step(
            "b_history_ws",
            f"{name}: b) history",
            lambda: ws_load.history(target, http, sizes.history_calls, run),
        )

        async def fan_out_once(n: int, k: int) -> dict[str, Any]:
            return await ws_load.fan_out(target, http, n, sizes.tokens, f"{run}-{k}")

        async def fan_out() -> list[dict[str, Any]]:
            await fan_out_once(1, -1)  # warm-up, left out
            runs = sizes.fan_out_runs
            rows = await levels(
                lambda n: repeated(fan_out_once, n, runs, FAN_OUT_SPREAD), sizes.fan_out
            )
            return with_delivery_lag(rows)

        await step("c_fan_out_ws", f"{name}: c) WS fan-out", fan_out)
        await step(
            "e_cold_connect_ws",
            f"{name}: e) cold connects",
            lambda: ws_load.cold_connects(target, http, sizes.cold, run),
        )
        await step(
            "i_rest_appends",
            f"{name}: i) REST appends",
            lambda: rest_load.appends(
                target, run, sizes.rest_seconds, sizes.rest_runs, sizes.rest_sessions
            ),
        )
    if target.credentials.on:
        return
    await step(
        "g_prompt_round_trip_grpc",
        f"{name}: g) gRPC round trips",
        lambda: levels(
            lambda c: grpc_load.prompt_round_trips(target, c, sizes.seconds, run), sizes.levels
        ),
    )

    async def grpc_fan_out_once(n: int, k: int) -> dict[str, Any]:
        return await grpc_load.fan_out(target, n, sizes.tokens, f"{run}-{k}")

    async def grpc_fan_out() -> list[dict[str, Any]]:
        await grpc_fan_out_once(1, -1)  # warm-up, left out
        runs = sizes.fan_out_runs
        rows = await levels(
            lambda n: repeated(grpc_fan_out_once, n, runs, FAN_OUT_SPREAD), sizes.fan_out
        )
        return with_delivery_lag(rows)

    await step("g_fan_out_grpc", f"{name}: g) gRPC fan-out", grpc_fan_out)

    async def web_fan_out_once(n: int, k: int) -> dict[str, Any]:
        assert WEB_FAN_OUT is not None
        row: dict[str, Any] = await WEB_FAN_OUT(
            target, target.envoy_url, n, sizes.tokens, f"{run}-{k}"
        )
        return row

    async def web_fan_out() -> list[dict[str, Any]]:
        runs = sizes.fan_out_runs
        rows = await levels(
            lambda n: repeated(web_fan_out_once, n, runs, FAN_OUT_SPREAD), sizes.web_fan_out
        )
        return with_delivery_lag(rows)

    if "g_fan_out_grpc_web_envoy" in AUTH_OFF_ONLY and target.envoy_url:
        label = f"{name}: g) gRPC-web fan-out via Envoy"
        await step("g_fan_out_grpc_web_envoy", label, web_fan_out)
