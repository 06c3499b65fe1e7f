"""`make bench`: load scenarios a) to j) and machine baselines, in each configuration.

Configurations: access control on, as `make run`, and AUTH_MODE=off (bench/configs.py). JSON,
tables and plots per configuration go under bench/results/<config>/; then
`python -m bench.readme` turns them into README's performance table.

Every configuration runs on stacks of its own on free ports (the same settings every time,
bench/configs.py). With `--running`, the "auth-off" configuration's shared scenarios run against
a running system instead (`AUTH_MODE=off make run`, or --url/--grpc; PIDs from RUN_DIR for CPU
and memory figures; its own limits apply, so raise them); "default" always starts its own
stack. Scenarios f), h), j) and d) past its first level start stacks of their own
(bench/scenarios.py). `--quick` is a small smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import environment, paced, report, scenarios
from bench.configs import AUTH_OFF, CONFIGS, BenchConfig
from bench.target import ROOT, OwnStack, Target, from_run_dir, listening

RESULTS = ROOT / "bench" / "results"


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


def running_target(args: argparse.Namespace, config: BenchConfig) -> Target | None:
    """With --running, `make run` (or --url/--grpc) for the auth-off configuration."""
    if not args.running or config.auth:
        return None
    if not listening(args.grpc) or not healthy(args.url):
        print(f"nothing serves {args.url} and {args.grpc}: starting a stack of our own")
        return None
    if not anonymous(args.url):
        print("the running system requires tokens (start it with AUTH_MODE=off make run to")
        print("bench it): starting a stack of our own")
        return None
    target = replace(from_run_dir(args.url, args.grpc, Path(args.run_dir)), config=config.name)
    if listening(args.envoy.removeprefix("http://")):
        target.envoy_url = args.envoy  # g) over gRPC-web through make run's Envoy
    return target


async def one_config(
    args: argparse.Namespace,
    config: BenchConfig,
    sizes: scenarios.Sizes,
    bar: tqdm[Any],
    first: bool,
    machine: dict[str, Any],
) -> dict[str, Any]:
    """Every scenario of `config`; with `first`, the once-only ones too, the machine's
    baselines kept in `machine` for the other configurations' fractions."""
    selected = scenarios.selector(args.only)
    found: dict[str, Any] = {}
    step = scenarios.stepper(found, bar, selected)
    described = environment.describe()
    if first:
        await scenarios.once(sizes, step)
        machine.update({k: v for k, v in found.items() if k.startswith("baseline_")})
    await scenarios.own_stacks(config, sizes, step)
    target: Target | None = None
    settings: dict[str, Any] = {}
    if any(selected(k) for k in scenarios.ON_TARGET):
        target = running_target(args, config)
        # Envoy for g) over gRPC-web, which runs with access control off only
        envoy = not config.auth and "g_fan_out_grpc_web_envoy" in scenarios.AUTH_OFF_ONLY
        own = None if target is not None else OwnStack(config=config, envoy=envoy)
        try:
            if own is not None:
                target = await asyncio.to_thread(own.start)
            assert target is not None
            settings = environment.settings(target.pids)
            await scenarios.on_target(config, target, own is not None, sizes, step)
        finally:
            if own is not None:
                own.close()
    return {
        **described,
        "config": config.name,
        "config_title": config.title,
        "settings": settings,
        "target": target.description if target else "own stacks",
        "quick": args.quick,
        "scenarios": found,
        "fractions": fractions({**machine, **found}),
    }


async def main(args: argparse.Namespace) -> int:
    environment.raise_open_files_limit()
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    if args.paced_levels:
        levels = tuple(int(x) for x in args.paced_levels.split(","))
        sizes = replace(sizes, paced=replace(sizes.paced, levels=levels))
    if args.paced_runs:
        sizes = replace(sizes, paced=replace(sizes.paced, runs=args.paced_runs))
    names = list(CONFIGS) if args.config == "both" else [args.config]
    configs = [CONFIGS[n] for n in names]
    total = scenarios.count(configs, scenarios.selector(args.only))
    written = []
    machine: dict[str, Any] = {}
    with tqdm(total=total, unit="scenario", leave=False) as bar:
        for k, config in enumerate(configs):
            results = await one_config(args, config, sizes, bar, k == 0, machine)
            files = report.write(results, Path(args.out) / config.name)
            bar.clear()
            print(report.table(results))
            written += files
    print("written: " + ", ".join(str(f) for f in written))
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
        help="with --running: Envoy in front of the gateway (gRPC-web fan-out)",
    )
    parser.add_argument("--run-dir", default=os.environ.get("RUN_DIR", str(ROOT / ".run")))
    parser.add_argument(
        "--running", action="store_true", help="auth-off: bench the running system at --url"
    )
    parser.add_argument("--own", action="store_true", help="stacks of our own (the default)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--only", default="", help="comma-separated scenario letters or keys")
    parser.add_argument(
        "--config",
        choices=["both", *CONFIGS],
        default="both",
        help=f"bench/configs.py (default: both, {AUTH_OFF.name} second)",
    )
    parser.add_argument("--paced-levels", default="", help=f"h) levels (default {paced.LEVELS})")
    parser.add_argument("--paced-runs", type=int, default=0, help="h) runs per level")
    parser.add_argument("--out", default=str(RESULTS))
    started = time.monotonic()
    code = asyncio.run(main(parser.parse_args()))
    print(f"bench took {time.monotonic() - started:.0f} s")
    raise SystemExit(code)


if __name__ == "__main__":
    cli()
