"""The snapshot scripts on a real Redis (lua/snapshot.lua, lua/activate.lua, lua/purge.lua):
fenced, never replaced by an older one, never used for another log, deleted by a purge."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from deploy.stack.processes import RedisServer
from session_service.errors import Fenced, StoreUnavailable
from session_service.log import events as ev
from session_service.store.keys import idem_key, meta_key, snapshot_key
from session_service.store.purge_queue import PurgeQueue
from session_service.store.redis_client import RedisClient, close, connect
from session_service.store.sessions import Held, Loaded, Store

SID = "snap-store"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[RedisClient]:
    made = connect(redis_server.url, timeout_ms=5000, cluster=False)
    try:
        yield made
    finally:
        await close(made)


async def owned(store: Store, pod: str = "pod-a") -> Loaded:
    loaded = await store.activate(SID, pod, 60_000, 1)
    assert not isinstance(loaded, Held)
    return loaded


async def messages(store: Store, epoch: int, n: int) -> None:
    entries = [ev.encode_message("user", f"m{i}", "", i, f"c{i}") for i in range(n)]
    await store.append(SID, epoch, 1, entries)


async def test_a_stale_owner_cannot_store_a_snapshot(client):
    store = Store(client)
    first = await owned(store)
    await messages(store, first.epoch, 5)
    await store.release(SID, "pod-a", first.epoch, 1)
    await owned(store, "pod-b")
    with pytest.raises(Fenced):
        await store.save_snapshot(SID, first.epoch, 5, 1, b"{}")
    assert not await client.exists(snapshot_key(SID))


async def test_an_older_snapshot_never_replaces_a_newer_one(client):
    store = Store(client)
    loaded = await owned(store)
    await messages(store, loaded.epoch, 9)
    assert await store.save_snapshot(SID, loaded.epoch, 8, 3, b"eight")
    assert not await store.save_snapshot(SID, loaded.epoch, 6, 1, b"six")
    assert await client.hget(snapshot_key(SID), "body") == b"eight"


async def test_a_snapshot_past_the_logs_end_is_refused_and_never_used(client):
    store = Store(client)
    loaded = await owned(store)
    await messages(store, loaded.epoch, 3)
    with pytest.raises(StoreUnavailable):
        await store.save_snapshot(SID, loaded.epoch, 4, 1, b"four")
    await client.hset(snapshot_key(SID), mapping={"seq": 4, "from": 2, "body": b"four"})
    await store.release(SID, "pod-a", loaded.epoch, 1)
    again = await owned(store)
    assert (again.base, again.snapshot, len(again.entries)) == (0, b"", 3)


async def test_activation_reads_the_snapshot_and_the_log_from_its_window(client):
    store = Store(client)
    loaded = await owned(store)
    await messages(store, loaded.epoch, 10)
    await client.hset(idem_key(SID), "old", 7)
    await store.save_snapshot(SID, loaded.epoch, 8, 6, b"eight", {"c0": 1, "old": 2})
    await store.release(SID, "pod-a", loaded.epoch, 1)
    again = await owned(store)
    assert (again.base, again.snapshot) == (5, b"eight")
    assert again.entries == await store.log.load_entries(SID, 6, 10)
    whole = await store.activate(SID, "pod-a", 60_000, 1, snapshot=False)
    assert isinstance(whole, Loaded) and (whole.base, len(whole.entries)) == (0, 10)
    # The first snapshot records client ids the idem hash lacked, never overwriting one.
    assert await client.hgetall(idem_key(SID)) == {b"c0": b"1", b"old": b"7"}


async def test_a_purge_deletes_the_snapshot_with_the_log(client):
    store = Store(client)
    loaded = await owned(store)
    await messages(store, loaded.epoch, 4)
    await store.save_snapshot(SID, loaded.epoch, 4, 1, b"four")
    await store.release(SID, "pod-a", loaded.epoch, 1)
    await client.hset(meta_key(SID), "pg", 1)
    await PurgeQueue(client).purge(SID, 2)
    assert not await client.exists(snapshot_key(SID))
