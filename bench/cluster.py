"""`make bench-cluster`: what a crash of a session pod costs, measured on real processes.

Starts its own redis-server (AOF, fsync always) and three session-service pods on free ports,
then, ten times: appends continuously to a session through one pod, `kill -9`s the session's
owner, and measures the time from the kill to the next acknowledged append (the takeover),
restarting the killed pod afterwards. Reports takeover p50/max, acknowledged writes lost (must
be 0), and the share of sessions that move when a pod joins or leaves the ring. Prints a table
and writes bench/results/cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from common.ring import HashRing
from tests.grpc_client import SessionClient
from tests.stack import Stack

RESULTS = Path(__file__).resolve().parent / "results"
PODS = ["pod-a", "pod-b", "pod-c"]


async def append(client: SessionClient, sid: str, k: int) -> int:
    while True:
        try:
            reply = await client.append(sid, f"m{k}", client_id=f"{sid}-{k}")
            return int(reply.message.seq)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            await asyncio.sleep(0.02)


async def one_kill(stack: Stack, run: int) -> tuple[float, int, int]:
    """(takeover seconds, acknowledged, lost) for one kill -9 of a session's owner."""
    sid = f"bench-takeover-{run}-{time.time_ns()}"
    owner = HashRing(PODS).owner(sid)
    other = next(p for p in PODS if p != owner)
    client = SessionClient(stack.pod_addrs[other])
    acked: list[tuple[int, float]] = []
    try:
        for k in range(20):
            acked.append((await append(client, sid, k), time.monotonic()))
        stack.pods[owner].kill9()
        killed = time.monotonic()
        for k in range(20, 40):
            acked.append((await append(client, sid, k), time.monotonic()))
        stored = {m.seq for m in await client.list_all(sid)}
    finally:
        await client.close()
    await asyncio.to_thread(stack.start_pod, owner)
    takeover = min(t for _, t in acked if t > killed) - killed
    lost = len({seq for seq, _ in acked} - stored)
    return takeover, len(acked), lost


def moved_share(members: list[str], changed: list[str], keys: int = 20_000) -> float:
    before, after = HashRing(members), HashRing(changed)
    ids = [f"session-{i}" for i in range(keys)]
    return sum(before.owner(k) != after.owner(k) for k in ids) / keys


async def main(kills: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as workdir:
        stack = Stack(Path(workdir))
        try:
            stack.start_redis()
            for pod in PODS:
                stack.start_pod(pod)
            results = [await one_kill(stack, run) for run in range(kills)]
        finally:
            stack.close()
    takeovers = sorted(t * 1000 for t, _, _ in results)
    return {
        "kills": kills,
        "takeover_ms_p50": round(statistics.median(takeovers), 1),
        "takeover_ms_max": round(max(takeovers), 1),
        "acknowledged_writes": sum(a for _, a, _ in results),
        "writes_lost": sum(lost for _, _, lost in results),
        "keys_moved_on_join_3_to_4": round(moved_share(PODS, [*PODS, "pod-d"]), 4),
        "keys_moved_on_leave_3_to_2": round(moved_share(PODS, PODS[:2]), 4),
        "ideal_on_join": round(1 / 4, 4),
        "ideal_on_leave": round(1 / 3, 4),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    report = asyncio.run(main(args.kills))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(report, indent=2) + "\n")
    width = max(len(k) for k in report)
    print("cluster bench (3 pods, lease TTL 2 s, member TTL 2 s)")
    for key, value in report.items():
        print(f"  {key:<{width}}  {value}")
    print(f"written to {RESULTS / 'cluster.json'}")


if __name__ == "__main__":
    cli()
