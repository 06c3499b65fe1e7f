"""A cluster of session-service pods on one Redis: single ownership, fencing, crash takeover."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.ring import HashRing
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, start
from deploy.stack.waits import eventually
from tests.support.crash import (
    KillMoment,
    Writers,
    assert_appends_kept,
    grpc_append,
    grpc_retryable,
    kill_amid,
)
from tests.support.grpc_client import SessionClient, append_retrying
from tests.support.ledger import Ledger, Stored

pytestmark = pytest.mark.chaos

PODS = ["pod-a", "pod-b", "pod-c"]


def activations(stack: Stack) -> list[tuple[str, int, str]]:
    """(session, epoch, pod) of every activation in every pod's log."""
    out = []
    for pod in stack.pods.values():
        for line in pod.log_path.read_text().splitlines():
            if '"session activated"' in line:
                entry = json.loads(line)
                out.append((entry["session_id"], entry["epoch"], entry["pod_id"]))
    return out


def pods_only(redis_cluster: int = 0) -> StackSpec:
    """Three pods (no model, AI or gateway) on one Redis or on a Redis Cluster's masters."""
    return StackSpec(
        pods=tuple(PODS),
        wait_members=True,
        redis_cluster=redis_cluster,
        model=False,
        ai=False,
        gateway=False,
    )


@pytest.fixture(params=["redis", "redis-cluster"])
def cluster(request, own_stack: Stack) -> Stack:
    """Three pods on one Redis, or on a 3-master Redis Cluster."""
    return start(own_stack, pods_only(3 if request.param == "redis-cluster" else 0))


@pytest.fixture
def single_redis_cluster(own_stack: Stack) -> Stack:
    return start(own_stack, pods_only())


async def test_every_session_has_one_owner_per_epoch_under_writes_through_all_pods(cluster):
    clients = [SessionClient(cluster.pod_addrs[p]) for p in PODS]
    sessions = [f"s{i}" for i in range(200)]
    try:
        await asyncio.gather(
            *(
                append_retrying(random.choice(clients), sid, f"m{k}", f"{sid}-{k}")
                for sid in sessions
                for k in range(5)
            )
        )
        stored = {sid: await clients[0].list_all(sid) for sid in sessions}
    finally:
        for c in clients:
            await c.close()
    for sid in sessions:
        assert [m.seq for m in stored[sid]] == [1, 2, 3, 4, 5]
        assert sorted(m.content for m in stored[sid]) == [f"m{k}" for k in range(5)]
    seen = Counter((sid, epoch) for sid, epoch, _ in activations(cluster))
    assert max(seen.values()) == 1, "two activations share a session and epoch"
    ring = HashRing(PODS)
    owners = {sid: pod for sid, _, pod in activations(cluster)}
    assert all(owners[sid] == ring.owner(sid) for sid in sessions)


async def follow(client: SessionClient, sid: str, until: str) -> list[int]:
    """Message seqs seen by a subscriber that resumes from its cursor whenever its stream breaks,
    until it sees the message whose content is `until`."""
    seen: list[int] = []
    cursor = (0, 0)
    done = False
    while not done:
        stream = client.subscribe(sid, after_seq=cursor[0], after_offset=cursor[1])
        try:
            async for reply in stream:
                event = reply.event
                kind = event.WhichOneof("kind")
                if kind == "message_appended":
                    seen.append(event.seq)
                    done = event.message_appended.message.content == until
                if kind == "answer_delta":
                    cursor = (cursor[0], event.offset + 1)
                elif kind != "caught_up":
                    cursor = (event.seq, 0 if kind == "answer_ended" else cursor[1])
                if done:
                    break
        except grpc.aio.AioRpcError as exc:
            assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
            await asyncio.sleep(0.05)
        finally:
            stream.cancel()
    return seen


async def test_kill9_of_owner_loses_no_acknowledged_write_and_another_pod_takes_over(cluster):
    """kill -9 of the owner of three sessions at a random moment while six writers (through
    another pod) are mid-call: every acknowledged write is stored once, byte for byte, at its
    seq; a subscriber resuming from its cursor sees every message once, in order."""
    ring = HashRing(PODS)
    owner = ring.owner("takeover-0")
    sessions = [s for s in (f"takeover-{i}" for i in range(60)) if ring.owner(s) == owner][:3]
    sid = sessions[0]
    other = next(p for p in PODS if p != owner)
    client = SessionClient(cluster.pod_addrs[other])
    ledger = Ledger()
    writers = Writers(ledger, grpc_append(lambda: client), sessions, grpc_retryable)
    try:
        follower = asyncio.create_task(follow(client, sid, "the end"))
        writers.start()
        moment = KillMoment(f"kill -9 of owner {owner}")
        await kill_amid(writers, moment, cluster.pods[owner].kill9, after_acked=50)
        await writers.acked(ledger.count() + 30)
        await writers.stop()
        end = await append_retrying(client, sid, "the end", "end")
        ledger.record(sid, "end", "the end", end.message.seq)
        followed = await asyncio.wait_for(follower, 20)
        await assert_appends_kept(client, ledger)
    finally:
        await writers.cancel()
        await client.close()
    assert followed == list(range(1, end.message.seq + 1)), "a gap or a duplicate seen"
    takeover = writers.stall_after_kill()
    print(f"takeover after kill -9 of {owner}: {takeover * 1000:.0f} ms")
    assert takeover < 5.0


async def test_paused_owner_past_its_lease_is_fenced_and_drops_the_session(
    single_redis_cluster,
):
    cluster = single_redis_cluster
    sid = "paused-1"
    owner = HashRing(PODS).owner(sid)
    other = next(p for p in PODS if p != owner)
    via_owner = SessionClient(cluster.pod_addrs[owner])
    via_other = SessionClient(cluster.pod_addrs[other])
    paused = cluster.pods[owner]
    ledger = Ledger()
    try:
        before = await via_owner.append(sid, "before", client_id="b")
        ledger.record(sid, "b", "before", before.message.seq)
        os.kill(paused.pid, signal.SIGSTOP)
        try:
            stale = asyncio.create_task(via_owner.append(sid, "stale", client_id="stale"))
            after = await append_retrying(via_other, sid, "after", "a")  # waits out the lease
            ledger.record(sid, "a", "after", after.message.seq)
        finally:
            os.kill(paused.pid, signal.SIGCONT)
        try:
            await stale
        except grpc.aio.AioRpcError as exc:
            assert exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE)
        stored = await via_other.list_all(sid)
    finally:
        await via_owner.close()
        await via_other.close()
    ledger.assert_kept(sid, [Stored.of(m) for m in stored])
    contents = [m.content for m in stored]
    assert contents[:2] == ["before", "after"]
    # The stale write is stored only if the paused pod forwarded it to the new owner after
    # resuming; it is never stored by the paused owner at its old epoch, and never twice.
    assert contents.count("stale") <= 1
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
    epochs = {epoch: pod for s, epoch, pod in activations(cluster) if s == sid}
    assert epochs[1] == owner and epochs[2] == other
    log = paused.log_path.read_text()
    eventually(
        lambda: (
            "lease expired locally" in paused.log_path.read_text()
            or "owner lost the session" in paused.log_path.read_text()
        )
    )
    assert log is not None


async def test_draining_pod_reports_not_serving_before_it_stops(single_redis_cluster):
    pod = single_redis_cluster.pods["pod-a"]
    async with grpc.aio.insecure_channel(single_redis_cluster.pod_addrs["pod-a"]) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        os.kill(pod.pid, signal.SIGTERM)
        second = await watch.read()
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
    eventually(lambda: not pod.alive())
    eventually(lambda: single_redis_cluster.member_views()["pod-b"] == ["pod-b", "pod-c"])
