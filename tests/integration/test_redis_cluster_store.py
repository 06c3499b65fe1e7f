"""The session service's Redis code on a real 3-master Redis Cluster: the Store's scripts,
batched lease renewal per master, cluster-wide membership keys, a dead master."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from deploy.stack.redis_cluster import RedisClusterNodes, start_cluster
from session_service.errors import Fenced, LimitReached, StoreUnavailable
from session_service.store.footprint import Claim, LogLimit
from session_service.store.keys import lease_key, log_key, meta_key, owned_key
from session_service.store.members import MembersStore
from session_service.store.redis_client import RedisClient, close, connect, node_of
from session_service.store.sessions import Appended, Held, Loaded, Store, lease_value

TIMEOUT_MS = 1000
LEASE_TTL_MS = 30_000
NOW_MS = 1_700_000_000_000


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    cluster = start_cluster(tmp_path_factory.mktemp("shared"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A cluster one test may break; the live masters keep serving their slots."""
    cluster = start_cluster(tmp_path, full_coverage=False)
    try:
        yield cluster
    finally:
        cluster.stop()


async def client_of(cluster: RedisClusterNodes) -> AsyncIterator[RedisClient]:
    client = connect(cluster.url, TIMEOUT_MS, cluster=True)
    try:
        await client.initialize()
        yield client
    finally:
        await close(client)


@pytest.fixture
async def client(shared_cluster: RedisClusterNodes) -> AsyncIterator[RedisClient]:
    async for c in client_of(shared_cluster):
        yield c


async def test_store_activates_appends_fences_and_releases_on_every_master(client):
    store = Store(client)
    sessions = [f"store-{i}" for i in range(50)]
    assert len({node_of(client, lease_key(s)) for s in sessions}) == 3

    async def lifecycle(sid: str) -> None:
        first = await store.activate(sid, "pod-a", LEASE_TTL_MS, NOW_MS)
        assert first == Loaded(epoch=1, created_ms=NOW_MS, version=0, entries=[])
        assert await store.append(sid, 1, NOW_MS, [b"a", b"b"], client_id="m1") == Appended(1, 0)
        assert (await store.append(sid, 1, NOW_MS, [b"c"])).first_seq == 3
        repeated = await store.append(sid, 1, NOW_MS, [b"x"], client_id="m1")
        assert repeated == Appended(1, 0, duplicate=True)
        assert await store.activate(sid, "pod-b", LEASE_TTL_MS, NOW_MS) == Held("pod-a")
        assert await store.release(sid, "pod-a", 1, NOW_MS + 1)
        second = await store.activate(sid, "pod-b", LEASE_TTL_MS, NOW_MS + 2)
        assert isinstance(second, Loaded)
        assert (second.epoch, second.entries) == (2, [b"a", b"b", b"c"])
        with pytest.raises(Fenced):
            await store.append(sid, 1, NOW_MS, [b"stale"])

    await asyncio.gather(*(lifecycle(s) for s in sessions))


async def test_lease_renewal_batches_per_master_and_reports_leases_not_ours(client):
    store = Store(client)
    sessions = [f"renew-{i}" for i in range(30)]
    for sid in sessions:
        await store.activate(sid, "pod-a", LEASE_TTL_MS, NOW_MS)
    leases = [(sid, lease_value("pod-a", 1)) for sid in sessions]
    leases[0] = (sessions[0], lease_value("pod-z", 1))
    assert await store.renew(leases, LEASE_TTL_MS) == [False] + [True] * 29


async def test_log_and_session_limits_hold_on_the_cluster(client):
    """The log's bounds are in the write's script; a claim is reserved on the user's slot
    first and given back when the write is refused (session_service/store/footprint.py)."""
    store = Store(client)
    await store.activate("full", "pod-a", LEASE_TTL_MS, NOW_MS)
    bounds = LogLimit(bytes=10, events=3)
    await store.append("full", 1, NOW_MS, [b"12345"], log_limit=bounds)
    with pytest.raises(LimitReached, match="MAX_LOG_BYTES"):
        await store.append("full", 1, NOW_MS, [b"123456"], log_limit=bounds)
    assert await client.lrange(log_key("full"), 0, -1) == [b"12345"]
    claim = Claim("ann", 2)
    for sid in ("own-1", "own-2", "own-3"):
        await store.activate(sid, "pod-a", LEASE_TTL_MS, NOW_MS)
    await store.append("own-1", 1, NOW_MS, [b"g"], claim=claim)
    await store.append("own-2", 1, NOW_MS, [b"g"], claim=claim)
    with pytest.raises(LimitReached, match="MAX_SESSIONS_PER_USER"):
        await store.append("own-3", 1, NOW_MS, [b"g"], claim=claim)
    assert await client.llen(log_key("own-3")) == 0
    assert await client.smembers(owned_key("ann")) == {b"own-1", b"own-2"}
    with pytest.raises(Fenced):  # refused in the session's slot: the reservation comes back
        await store.append("own-3", 7, NOW_MS, [b"g"], claim=Claim("bob", 1))
    assert await client.smembers(owned_key("bob")) == set()


async def test_a_log_written_before_its_byte_count_gets_one_on_activation(client):
    store = Store(client)
    await store.activate("old", "pod-a", LEASE_TTL_MS, NOW_MS)
    await store.append("old", 1, NOW_MS, [b"12345", b"678"])
    await client.hdel(meta_key("old"), "lb")  # as written before the count existed
    await store.release("old", "pod-a", 1, NOW_MS)
    await store.activate("old", "pod-a", LEASE_TTL_MS, NOW_MS)
    assert await client.hget(meta_key("old"), "lb") == b"8"


async def test_membership_keys_share_one_slot_and_work_on_the_cluster(client):
    members = MembersStore(client)
    await members.heartbeat("pod-a", "127.0.0.1:1", 5000)
    await members.heartbeat("pod-b", "127.0.0.1:2", 5000)
    assert await members.members() == {"pod-a": "127.0.0.1:1", "pod-b": "127.0.0.1:2"}
    await members.leave("pod-a")
    assert await members.members() == {"pod-b": "127.0.0.1:2"}


@pytest.mark.chaos
async def test_dead_master_is_store_unavailable_and_its_aof_keeps_acknowledged_writes(
    own_cluster,
):
    async for client in client_of(own_cluster):
        store = Store(client)
        node = own_cluster.nodes[1]
        sessions = [
            s
            for s in (f"s-{i}" for i in range(40))
            if node_of(client, lease_key(s)).endswith(f":{own_cluster.ports[1]}")
        ][:5]
        for sid in sessions:
            await store.activate(sid, "pod-a", LEASE_TTL_MS, NOW_MS)
            await store.append(sid, 1, NOW_MS, [b"kept-1", b"kept-2"])
        own_cluster.kill9(1)
        assert not node.alive()
        with pytest.raises(StoreUnavailable):
            await store.append(sessions[0], 1, NOW_MS, [b"lost?"])
        own_cluster.restart(1)
        for sid in sessions:
            loaded = await store.activate(sid, "pod-a", LEASE_TTL_MS, NOW_MS)
            assert isinstance(loaded, Loaded)
            assert loaded.entries[:2] == [b"kept-1", b"kept-2"]
