"""A session pod partitioned from Redis and its peers (a network namespace this test creates)
loses its sessions to another pod and can never store a write for them afterwards."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.ring import HashRing
from tests import netns
from tests.grpc_client import SessionClient, append_retrying
from tests.helpers import Process, RedisServer, eventually, free_port, wait_grpc_serving

pytestmark = pytest.mark.skipif(not netns.available(), reason="needs root and iproute2")

PODS = ["pod-a", "pod-b", "pod-p"]


@pytest.fixture
def partitioned_cluster(
    tmp_path: Path,
) -> Iterator[tuple[netns.Netns, dict[str, Process], dict[str, str]]]:
    ns = netns.Netns().create()
    procs: dict[str, Process] = {}
    redis: RedisServer | None = None
    try:
        redis = RedisServer(tmp_path / "redis", None, ns.host_ip)
        redis.start()
        addrs: dict[str, str] = {}
        for pod in PODS:
            host = ns.ns_ip if pod == "pod-p" else ns.host_ip
            port = free_port()
            addrs[pod] = f"{host}:{port}"
            env = {
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "AUTH_MODE": "off",
                "BIND_HOST": host,
                "ALLOW_INSECURE_NETWORK": "true",  # a private test namespace, no Redis password
                "SESSION_PORT": str(port),
                "POD_ID": pod,
                "AI_SERVICE_ADDR": "127.0.0.1:1",
                "REDIS_URL": f"redis://{ns.host_ip}:{redis.port}/0",
                "REDIS_TIMEOUT_MS": "500",
            }
            argv = [sys.executable, "-m", "session_service"]
            if pod == "pod-p":
                argv = ns.argv(*argv)
            procs[pod] = Process(pod, argv, env, tmp_path / f"{pod}.log")
            procs[pod].start()
            wait_grpc_serving(procs[pod], addrs[pod])
        eventually(
            lambda: all(
                f'"members": {json.dumps(PODS)}' in p.log_path.read_text() for p in procs.values()
            )
        )
        yield ns, procs, addrs
    finally:
        for proc in procs.values():
            proc.kill9()
        if redis is not None:
            redis.stop()
        ns.delete()


async def test_partitioned_owner_loses_its_sessions_and_cannot_store_after_healing(
    partitioned_cluster,
):
    ns, procs, addrs = partitioned_cluster
    sid = next(s for s in (f"part-{i}" for i in range(100)) if HashRing(PODS).owner(s) == "pod-p")
    via_p = SessionClient(addrs["pod-p"])
    via_a = SessionClient(addrs["pod-a"])
    try:
        await via_p.append(sid, "before", client_id="before")
        ns.cut()
        try:
            taken = await append_retrying(via_a, sid, "during", "during")
        finally:
            ns.heal()
        eventually(lambda: "lease expired locally" in procs["pod-p"].log_path.read_text())
        # Back on the network, the old owner takes no write for the session itself: it forwards.
        after = await append_retrying(via_p, sid, "after", "after")
        stored = await via_a.list_all(sid)
        session = await via_a.get(sid)
    finally:
        await via_p.close()
        await via_a.close()
    assert [m.content for m in stored] == ["before", "during", "after"]
    # pod-a took over at epoch 2. Once pod-p is back in the member set the ring may hand the
    # session back to it (a hand-off: epoch 3) before or after "after" is written; either way
    # "after" is stored once, at the epoch the session has.
    assert taken.epoch == 2 and after.epoch in (2, 3) and session.epoch == after.epoch
    assert [m.seq for m in stored] == [1, 2, 3]
