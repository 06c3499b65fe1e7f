"""Fast takeover (docs/failover.md): a pod whose process died is noticed from its Redis
connection, not from its TTLs; a paused pod and a Redis restart are not mistaken for one.

The pods here run with lease and member TTLs of a minute: a takeover that waited for either
would not finish within the retries' 15 s, so a passing takeover proves the fast path.
"""

from __future__ import annotations

import os
import signal

import pytest

from common.ring import HashRing
from deploy.stack.processes import RedisServer
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, start
from deploy.stack.waits import eventually
from tests.support.grpc_client import SessionClient, append_retrying

pytestmark = pytest.mark.chaos

PODS = ("pod-a", "pod-b", "pod-c")
LONG_TTLS = {"LEASE_TTL_MS": "60000", "MEMBER_TTL_MS": "60000"}
GONE = "{dc-cluster}:gone"
MEMBERS = "{dc-cluster}:members"


@pytest.fixture
def cluster(own_stack: Stack) -> Stack:
    spec = StackSpec(
        pods=PODS, wait_members=True, model=False, ai=False, gateway=False, pod_env=LONG_TTLS
    )
    return start(own_stack, spec)


def redis_of(stack: Stack) -> RedisServer:
    assert stack.redis is not None
    return stack.redis


def members(stack: Stack) -> set[str]:
    with redis_of(stack).client() as client:
        return set(client.zrange(MEMBERS, 0, -1))


def gone(stack: Stack) -> set[str]:
    with redis_of(stack).client() as client:
        return set(client.zrange(GONE, 0, -1))


def probes(stack: Stack) -> int:
    """How many presence probes (CLIENT LIST) Redis has answered."""
    with redis_of(stack).client() as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_client|list", {}).get("calls", 0))


def presence_connection(stack: Stack, pod: str) -> str:
    with redis_of(stack).client() as client:
        return str(client.hget("{dc-cluster}:conns", pod)).partition(":")[2]


async def test_a_killed_owner_is_taken_over_from_its_closed_connection_not_its_ttls(cluster):
    sid = "fast-takeover"
    owner = HashRing(list(PODS)).owner(sid)
    other = next(p for p in PODS if p != owner)
    client = SessionClient(cluster.pod_addrs[other])
    try:
        first = await append_retrying(client, sid, "before the kill", "c1")
        cluster.pods[owner].kill9()
        second = await append_retrying(client, sid, "after the kill", "c2")
        stored = await client.list_all(sid)
        session = await client.get(sid)
    finally:
        await client.close()
    assert [(m.seq, m.content) for m in stored] == [(1, "before the kill"), (2, "after the kill")]
    assert (first.message.seq, second.message.seq) == (1, 2)
    assert session.epoch == 2, "the new owner took the session at the next epoch"
    assert owner in gone(cluster) and owner not in members(cluster)


async def test_a_paused_owner_keeps_its_connection_and_is_not_declared_gone(cluster):
    sid = "paused-not-gone"
    owner = HashRing(list(PODS)).owner(sid)
    other = next(p for p in PODS if p != owner)
    client = SessionClient(cluster.pod_addrs[other])
    paused = cluster.pods[owner]
    try:
        await append_retrying(client, sid, "before", "c1")
        os.kill(paused.pid, signal.SIGSTOP)
        try:
            before = probes(cluster)
            # The other two pods probe every 100 ms: wait until they did, many times over.
            eventually(lambda: probes(cluster) >= before + 20, timeout=15)
            assert owner in members(cluster)
            assert not gone(cluster)
        finally:
            os.kill(paused.pid, signal.SIGCONT)
        reply = await append_retrying(client, sid, "after", "c2")
    finally:
        await client.close()
    assert reply.message.seq == 2
    assert not gone(cluster)


async def test_a_cut_connection_evicts_a_live_pod_which_rejoins_and_is_fenced(cluster):
    sid = "cut-connection"
    owner = HashRing(list(PODS)).owner(sid)
    via_owner = SessionClient(cluster.pod_addrs[owner])
    try:
        await append_retrying(via_owner, sid, "one", "c1")
        connection = presence_connection(cluster, owner)
        with redis_of(cluster).client() as redis_client:
            assert redis_client.client_kill_filter(_id=connection) == 1
        eventually(lambda: owner in gone(cluster), timeout=10)
        eventually(lambda: owner in members(cluster) and owner not in gone(cluster), timeout=10)
        assert presence_connection(cluster, owner) != connection
        await append_retrying(via_owner, sid, "two", "c2")
        stored = await via_owner.list_all(sid)
    finally:
        await via_owner.close()
    assert [(m.seq, m.content) for m in stored] == [(1, "one"), (2, "two")]


async def test_a_redis_restart_does_not_make_pods_evict_each_other(cluster):
    sid = "redis-restart"
    client = SessionClient(cluster.pod_addrs["pod-a"])
    try:
        await append_retrying(client, sid, "before", "c1")
        tokens = {p: presence_connection(cluster, p) for p in PODS}
        redis_of(cluster).kill9()
        redis_of(cluster).start()  # from its AOF, same port
        eventually(
            lambda: all(presence_connection(cluster, p) not in ("", tokens[p]) for p in PODS),
            timeout=15,
        )
        reply = await append_retrying(client, sid, "after", "c2")
        stored = await client.list_all(sid)
    finally:
        await client.close()
    assert not gone(cluster), "a pod was evicted for a connection the restart closed"
    assert members(cluster) == set(PODS)
    assert reply.message.seq == 2
    assert [m.content for m in stored] == ["before", "after"]


async def test_calls_right_after_a_kill_wait_in_the_pods_instead_of_failing(cluster):
    """No client retry here: a read, an idempotent write and a subscription sent through
    another pod the moment the owner died each get their answer, because that pod waits for
    the dead owner to be dropped and then serves them itself."""
    sid = "no-retry-needed"
    owner = HashRing(list(PODS)).owner(sid)
    other = next(p for p in PODS if p != owner)
    client = SessionClient(cluster.pod_addrs[other])
    try:
        await append_retrying(client, sid, "one", "c1")
        cluster.pods[owner].kill9()
        stream = client.subscribe(sid, after_seq=0)
        first = await stream.read()
        reply = await client.append(sid, "two", client_id="c2")
        stored = await client.list_all(sid)
        stream.cancel()
    finally:
        await client.close()
    assert first.event.seq == 1
    assert reply.message.seq == 2
    assert [(m.seq, m.content) for m in stored] == [(1, "one"), (2, "two")]
