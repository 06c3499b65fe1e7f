"""Search under attack (docs/search.md), AUTH_MODE=jwt with the real indexer: a user's search
flood stops at SEARCH_RATE_PER_MIN, queries are bounded in cost, a slow query does not stop the
indexer's other calls, and a purged thread leaves the SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy.stack.waits import async_eventually, eventually
from durablechat.v1 import search_pb2, search_pb2_grpc, threads_pb2
from session_service.features.threads.purge import Purger
from session_service.store.keys import lease_key
from session_service.store.redis_client import close, connect
from tests.support.secure import SecureStack, User, room_id, secure_stack

RATE = 20
QUERY_MS = 1500
LAG_S = 10.0
POLL_S = 0.5
"""Polls of search slow enough to stay under RATE for LAG_S."""
SLOW_ROWS = 300_000
SLOW_WORDS = [f"w{k}x" for k in range(20)]


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    search_env = {
        "SEARCH_RATE_PER_MIN": str(RATE),
        "SEARCH_MIN_TERM_CHARS": "3",
        "SEARCH_QUERY_MS": str(QUERY_MS),
    }
    with secure_stack(
        tmp_path_factory.mktemp("search-limits"), search=True, search_env=search_env
    ) as running:
        yield running


def db_path(secure: SecureStack) -> Path:
    return secure.stack.workdir / "search.db"


async def search(secure: SecureStack, user: User, query: str, **kwargs: Any) -> Any:
    async with grpc.aio.insecure_channel(secure.stack.search_addr) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        request = search_pb2.SearchMessagesRequest(query=query, **kwargs)
        return await stub.SearchMessages(request, metadata=user.metadata, timeout=30)


async def refusal(secure: SecureStack, user: User, query: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await search(secure, user, query)
    return refused.value


async def until_found(secure: SecureStack, user: User, word: str, wanted: set[Any]) -> None:
    async def check() -> bool:
        hits = (await search(secure, user, word)).hits
        return {(h.session_id, h.seq) for h in hits} == wanted

    await async_eventually(check, within=LAG_S, interval=POLL_S)


async def test_search_flood_stops_at_user_rate(secure: SecureStack) -> None:
    """Attack: one user floods the indexer with searches (each a SQLite query)."""
    flooder, bystander = secure.user("search-flooder"), secure.user("search-bystander")
    try:
        refused = None
        for _ in range(RATE + 1):
            try:
                await search(secure, flooder, "anything")
            except grpc.aio.AioRpcError as exc:
                refused = exc
                break
        assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "SEARCH_RATE_PER_MIN" in (refused.details() or "")
        wait = dict(refused.trailing_metadata() or ())["dc-retry-after-ms"]
        assert 0 < int(wait) <= 60_000 / RATE + 1
        async with aiohttp.ClientSession() as http:  # the same user over HTTP: 429
            headers = {"Authorization": f"Bearer {flooder.token}"}
            url = f"{secure.stack.gateway_url}/api/search"
            async with http.get(url, params={"q": "anything"}, headers=headers) as response:
                assert response.status == 429
                assert int(response.headers["Retry-After"]) >= 1
                body = await response.json()
                assert body["error"]["code"] == "RESOURCE_EXHAUSTED"
                assert "SEARCH_RATE_PER_MIN" in body["error"]["message"]
        assert (await search(secure, bystander, "anything")).hits == []  # others unaffected
    finally:
        await flooder.close()
        await bystander.close()


async def test_one_letter_prefix_query_refused(secure: SecureStack) -> None:
    """Attack: costly queries: `a*` expands to every word starting with a; many words; long."""
    user = secure.user("search-prefixer")
    try:
        for query, rule in (
            ("a*", "SEARCH_MIN_TERM_CHARS"),
            ("hello ab*", "SEARCH_MIN_TERM_CHARS"),
            (" ".join(f"w{k}" for k in range(21)), "more than 20 different words"),
            ("x" * 501, "longer than 500 characters"),
        ):
            refused = await refusal(secure, user, query)
            assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, query
            assert rule in (refused.details() or ""), refused.details()
        assert (await search(secure, user, "abc*")).hits == []  # long enough: allowed
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {user.token}"}
            url = f"{secure.stack.gateway_url}/api/search"
            async with http.get(url, params={"q": "b*"}, headers=headers) as response:
                assert response.status == 400
                body = await response.json()
                assert "SEARCH_MIN_TERM_CHARS" in body["error"]["message"]
    finally:
        await user.close()


def fill(path: Path, session_id: str, user: str, rows: int) -> None:
    """Writes `rows` messages, all matching SLOW_WORDS, into the indexer's file directly."""
    db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
    try:
        words = " ".join(SLOW_WORDS)
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO msg (content, session_id, seq, role, user, ts)"
            " VALUES (?, ?, ?, 'user', ?, 0)",
            ((f"{words} {i}", session_id, i + 1, user) for i in range(rows)),
        )
        db.execute("INSERT INTO members (session_id, user) VALUES (?, ?)", (session_id, user))
        db.execute(
            "INSERT INTO threads (session_id, indexed_seq, deleted, title, created)"
            " VALUES (?, ?, 0, 'slow', 0)",
            (session_id, rows),
        )
        db.execute("COMMIT")
    finally:
        db.close()


async def test_slow_query_does_not_block_indexer(secure: SecureStack) -> None:
    """Attack: a query costly enough to hold SQLite for seconds, which used to stop the
    indexer's event loop: health checks, other users' searches and indexing all waited."""
    slowpoke, other = secure.user("search-slowpoke"), secure.user("search-other")
    await asyncio.to_thread(fill, db_path(secure), room_id(), slowpoke.name, SLOW_ROWS)
    channel = grpc.aio.insecure_channel(secure.stack.search_addr)
    health = health_pb2_grpc.HealthStub(channel)
    try:
        started = time.monotonic()
        slow = asyncio.ensure_future(search(secure, slowpoke, " ".join(SLOW_WORDS)))
        answered_during = 0
        while not slow.done():
            asked = time.monotonic()
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            if not slow.done():
                answered_during += 1
                assert time.monotonic() - asked < 1.0, "a health check waited for the query"
                if answered_during == 1:  # another user's search runs alongside
                    assert (await search(secure, other, "nothing here")).hits == []
        took = time.monotonic() - started
        try:
            await slow
        except grpc.aio.AioRpcError as exc:  # cut at SEARCH_QUERY_MS: fine, and said so
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "SEARCH_QUERY_MS" in (exc.details() or "")
        assert took >= 0.5, f"the query took {took:.2f} s: too fast to prove anything"
        assert answered_during >= 3  # the old loop answered none while SQLite ran
        # The indexer kept indexing: a new message is found.
        sid = room_id()
        word = f"fresh{sid[-6:]}"
        posted = (await other.post(sid, f"a {word} message")).message
        await until_found(secure, other, word, {(sid, posted.seq)})
    finally:
        await channel.close()
        await slowpoke.close()
        await other.close()


def rows_of(path: Path, session_id: str, word: str) -> dict[str, int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        counts = {
            table: db.execute(
                f"SELECT count(*) FROM {table} WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            for table in ("msg", "threads", "members")
        }
        counts["word"] = db.execute(
            "SELECT count(*) FROM msg WHERE msg MATCH ?", (f'"{word}"',)
        ).fetchone()[0]
        return counts
    finally:
        db.close()


async def test_purged_thread_leaves_search_index(secure: SecureStack) -> None:
    """Attack on privacy: a purged thread's words stay on disk in the search file forever."""
    ann = secure.user("search-purger")
    sid = room_id()
    word = f"secret{sid[-6:]}"
    try:
        posted = (await ann.post(sid, f"my {word} words")).message
        await until_found(secure, ann, word, {(sid, posted.seq)})
        assert rows_of(db_path(secure), sid, word) == {
            "msg": 1,
            "threads": 1,
            "members": 1,
            "word": 1,
        }
        reply = await ann.call("DeleteThread", threads_pb2.DeleteThreadRequest(session_id=sid))
        purge_at = reply.purge_at.seconds * 1000 + reply.purge_at.nanos // 10**6
        assert secure.stack.redis is not None
        redis = secure.stack.redis.client()
        eventually(lambda: not redis.exists(lease_key(sid)))  # the delete let the owner go
        client = connect(secure.stack.redis.url, 2000, cluster=False)
        try:
            assert await Purger(client, 3600).purge_due(now=purge_at + 1) >= 1
        finally:
            await close(client)
        gone = {"msg": 0, "threads": 0, "members": 0, "word": 0}
        await async_eventually(
            lambda: asyncio.to_thread(lambda: rows_of(db_path(secure), sid, word) == gone),
            within=LAG_S,
            interval=POLL_S,
        )
        assert (await search(secure, ann, word)).hits == []
    finally:
        await ann.close()
