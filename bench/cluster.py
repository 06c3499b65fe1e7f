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
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, started
from durablechat.v1 import common_pb2, session_pb2, session_pb2_grpc

RESULTS = Path(__file__).resolve().parent / "results"
PODS = ["pod-a", "pod-b", "pod-c"]
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class Pod:
    """Appends and reads through one pod (plain stubs: the bench does not import tests)."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = session_pb2_grpc.SessionServiceStub(self.channel)

    async def append(self, sid: str, k: int) -> int:
        """Appends message k with an idempotency key, retrying while the session moves."""
        request = session_pb2.AppendMessageRequest(
            session_id=sid,
            role=common_pb2.ROLE_USER,
            content=f"m{k}",
            client_message_id=f"{sid}-{k}",
        )
        while True:
            try:
                reply = await self.stub.AppendMessage(request, timeout=10)
                return int(reply.message.seq)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise
                await asyncio.sleep(0.02)

    async def stored_seqs(self, sid: str) -> set[int]:
        seqs: set[int] = set()
        after = 0
        while True:
            page = await self.stub.ListMessages(
                session_pb2.ListMessagesRequest(session_id=sid, after_seq=after, limit=1000),
                timeout=10,
            )
            seqs.update(m.seq for m in page.messages)
            if not page.has_more:
                return seqs
            after = page.messages[-1].seq

    async def close(self) -> None:
        await self.channel.close()


async def one_kill(stack: Stack, run: int) -> tuple[float, int, int]:
    """(takeover seconds, acknowledged, lost) for one kill -9 of a session's owner."""
    sid = f"bench-takeover-{run}-{time.time_ns()}"
    owner = HashRing(PODS).owner(sid)
    other = next(p for p in PODS if p != owner)
    client = Pod(stack.pod_addrs[other])
    acked: list[tuple[int, float]] = []
    try:
        for k in range(20):
            acked.append((await client.append(sid, k), time.monotonic()))
        stack.pods[owner].kill9()
        killed = time.monotonic()
        for k in range(20, 40):
            acked.append((await client.append(sid, k), time.monotonic()))
        stored = await client.stored_seqs(sid)
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
        spec = StackSpec(pods=tuple(PODS), model=False, ai=False, gateway=False)
        with started(Path(workdir), spec) as stack:
            results = [await one_kill(stack, run) for run in range(kills)]
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
