"""Listing 10,000 threads of one user with every owner cold: no session is activated (each pod
reports no session in memory after the listing, and its activations counter did not move)."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
import pytest

from deploy.stack.ports import free_port
from deploy.stack.waits import eventually
from durablechat.v1 import cluster_pb2, cluster_pb2_grpc
from tests.support.secure import PODS, SecureStack, room_id, secure_stack

pytestmark = pytest.mark.slow

THREADS = 10_000
PAGE = 500


async def pod_status(
    address: str, metadata: tuple[tuple[str, str], ...]
) -> cluster_pb2.GetPodStatusResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        request = cluster_pb2.GetPodStatusRequest()
        return await stub.GetPodStatus(request, timeout=10, metadata=metadata)


def activations(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("dc_session_activations_total "):
                return float(line.split()[1])
    raise AssertionError("no activations counter in the metrics")


async def create_threads(secure: SecureStack, user: str) -> list[str]:
    """THREADS threads, each made by its first message, through both pods."""
    people = [secure.user(user, pod) for pod in PODS]
    made = [room_id() for _ in range(THREADS)]
    gate = asyncio.Semaphore(64)

    async def post(index: int, sid: str) -> None:
        async with gate:
            await people[index % len(people)].post(sid, f"thread number {index}")

    try:
        await asyncio.gather(*(post(i, sid) for i, sid in enumerate(made)))
    finally:
        for person in people:
            await person.close()
    return made


@pytest.mark.timeout(300)
async def test_ten_thousand_threads_are_listed_without_waking_an_owner(tmp_path: Path) -> None:
    # Owners leave memory soon after their write, as idle ones do, so the pods do not renew
    # thousands of leases while the threads are made. The burst of 10,000 first writes with
    # fsync on every write can hold one Redis reply past the 1 s default on a slow CI disk (a
    # clean-clone CI run failed here with "redis: Timeout reading"); making the threads is the
    # setup, not what is tested, so the pods wait longer for Redis.
    pod_env = {"RATE_USER_PER_MIN": "0", "SESSION_IDLE_MS": "500", "REDIS_TIMEOUT_MS": "10000"}
    with secure_stack(tmp_path, pod_env) as secure:
        made = await create_threads(secure, "ann")
        # Every owner goes cold: both pods die and come back with nothing in memory.
        auth = {"AUTH_MODE": "jwt", "AUTH_SECRET_FILE": str(secure.secret_file)}
        metrics = {pod: free_port() for pod in PODS}
        for pod in PODS:
            secure.stack.pods[pod].kill9()
        for pod in PODS:
            secure.stack.start_pod(pod, METRICS_PORT=str(metrics[pod]), **pod_env, **auth)
        eventually(
            lambda: all(secure.stack.member_views().get(p) == PODS for p in PODS), timeout=30
        )
        urls = {pod: f"http://127.0.0.1:{port}/metrics" for pod, port in metrics.items()}
        before = {pod: activations(url) for pod, url in urls.items()}

        ann = secure.user("ann", "pod-b")
        listed: list[tuple[int, str, str]] = []
        token = ""
        try:
            while True:
                page = await ann.threads(limit=PAGE, token=token)
                listed += [
                    (t.last_activity_at.ToMilliseconds(), t.session_id, t.preview)
                    for t in page.threads
                ]
                token = page.next_page_token
                if not token:
                    break
        finally:
            await ann.close()

        assert sorted(sid for _, sid, _ in listed) == sorted(made)
        times = [ms for ms, _, _ in listed]
        assert times == sorted(times, reverse=True)
        previews = {sid: preview for _, sid, preview in listed}
        assert previews[made[1234]] == "thread number 1234"
        for pod in PODS:
            status = await pod_status(secure.stack.pod_addrs[pod], secure.stack.cluster_metadata)
            assert status.active_sessions == 0, pod
            assert activations(urls[pod]) == before[pod], pod
