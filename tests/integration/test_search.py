"""Search (docs/search.md) with a real search indexer, SQLite FTS5 file and Redis feed, over
gRPC with AUTH_MODE=jwt: words written a moment ago are found within the documented lag, only in
the caller's threads, with highlighted snippets; removals and deletes hide hits; the index is
rebuilt from Redis, and catches up after the indexer was down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from deploy.stack.waits import async_eventually
from durablechat.v1 import access_pb2, search_pb2, search_pb2_grpc, threads_pb2
from tests.support.secure import SecureStack, User, room_id, secure_stack
from tests.support.user_calls import prompt

LAG_S = 5.0
"""The tests' patience; docs/search.md says about a second."""
NO_RATE = {"SEARCH_RATE_PER_MIN": "0"}
"""The waits here poll as fast as they can; the rate has its own test
(tests/security/test_search_limits.py)."""


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    with secure_stack(
        tmp_path_factory.mktemp("search"), search=True, search_env=NO_RATE
    ) as running:
        yield running


def auth_env(secure: SecureStack) -> dict[str, str]:
    return {"AUTH_MODE": "jwt", "AUTH_SECRET_FILE": str(secure.secret_file)}


async def search(secure: SecureStack, user: User, query: str, **kwargs: Any) -> Any:
    async with grpc.aio.insecure_channel(secure.stack.search_addr) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        request = search_pb2.SearchMessagesRequest(query=query, **kwargs)
        return await stub.SearchMessages(request, metadata=user.metadata, timeout=10)


async def found(secure: SecureStack, user: User, query: str) -> set[tuple[str, int]]:
    return {(h.session_id, h.seq) for h in (await search(secure, user, query)).hits}


async def until_found(secure: SecureStack, user: User, query: str, wanted: set[Any]) -> None:
    async def check() -> bool:
        return await found(secure, user, query) == wanted

    await async_eventually(check, within=LAG_S)


async def test_a_word_written_a_moment_ago_is_found_in_the_callers_threads_only(
    people: dict[str, User], secure: SecureStack
) -> None:
    ann, bob, vic = people["ann"], people["bob"], people["vic"]
    word = f"zebra{room_id()[-6:]}"
    shared, private = room_id(), room_id()
    posted = (await ann.post(shared, f"The quick brown {word} jumps over the lazy dog")).message
    await ann.set_member(shared, bob.name, access_pb2.ACCESS_ROLE_VIEWER)
    hidden = (await vic.post(private, f"vic's own {word}")).message
    await until_found(secure, ann, word, {(shared, posted.seq)})
    await until_found(secure, bob, word, {(shared, posted.seq)})
    await until_found(secure, vic, word, {(private, hidden.seq)})

    hit = (await search(secure, ann, word.upper())).hits[0]
    assert hit.snippet == f"The quick brown {word} jumps over the lazy dog"
    assert [(r.start, r.end) for r in hit.highlights] == [(16, 16 + len(word))]
    assert hit.user == ann.name and hit.created_at.seconds > 0

    _, answer = await prompt(ann, shared, f"count for {word} tokens=3")
    await until_found(secure, ann, "tok1", {(shared, answer.seq)})
    prefix = await search(secure, ann, f"{word[:-3]}*")
    assert {h.seq for h in prefix.hits} >= {posted.seq}

    await ann.set_member(shared, bob.name, access_pb2.ACCESS_ROLE_UNSPECIFIED)
    await until_found(secure, bob, word, set())
    await ann.call("DeleteThread", threads_pb2.DeleteThreadRequest(session_id=shared))
    await until_found(secure, ann, word, set())
    await ann.call("RestoreThread", threads_pb2.RestoreThreadRequest(session_id=shared))
    await until_found(secure, ann, word, {(shared, posted.seq), (shared, posted.seq + 2)})


async def test_pages_and_bad_queries(people: dict[str, User], secure: SecureStack) -> None:
    ann = people["ann"]
    sid = room_id()
    word = f"needle{sid[-6:]}"
    for index in range(25):
        await ann.post(sid, f"{word} number {index}")
    await async_eventually(lambda: _count(secure, ann, word, 25), within=LAG_S)
    first = await search(secure, ann, word)
    assert len(first.hits) == 20 and first.next_page_token
    rest = await search(secure, ann, word, page_token=first.next_page_token)
    assert len(rest.hits) == 5 and not rest.next_page_token
    only = await search(secure, ann, word, session_id=room_id())
    assert not only.hits
    for kwargs in (
        {"query": ""},
        {"query": "!!! ???"},
        {"query": " ".join(f"w{k}" for k in range(21))},
        {"query": word, "limit": 101},
        {"query": word, "page_token": "x"},
        {"query": word, "session_id": "bad id!"},
    ):
        query = str(kwargs.pop("query"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await search(secure, ann, query, **kwargs)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, kwargs
    # FTS5 operators are only words here: nothing is an error, nothing breaks out.
    assert (await search(secure, ann, f'{word} OR "x" NEAR(')).hits == []
    async with grpc.aio.insecure_channel(secure.stack.search_addr) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.SearchMessages(search_pb2.SearchMessagesRequest(query=word), timeout=10)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_search_over_http(people: dict[str, User], secure: SecureStack) -> None:
    ann, vic = people["ann"], people["vic"]
    sid = room_id()
    word = f"heron{sid[-6:]}"
    posted = (await ann.post(sid, f"a grey {word} by the water")).message
    await until_found(secure, ann, word, {(sid, posted.seq)})
    url = f"{secure.stack.gateway_url}/api/search"
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {ann.token}"}
        async with http.get(url, params={"q": word}, headers=headers) as response:
            assert response.status == 200
            body = await response.json()
        [hit] = body["hits"]
        assert (hit["sessionId"], hit["seq"], hit["role"]) == (sid, posted.seq, "user")
        start, end = hit["highlights"][0]
        assert hit["snippet"][start:end] == word
        headers = {"Authorization": f"Bearer {vic.token}"}
        async with http.get(url, params={"q": word}, headers=headers) as response:
            assert (await response.json())["hits"] == []
        async with http.get(url, params={"q": "?!"}, headers=headers) as response:
            assert response.status == 400
        async with http.get(url, params={"q": word}) as response:
            assert response.status == 401


async def _count(secure: SecureStack, user: User, word: str, wanted: int) -> bool:
    hits = await search(secure, user, word, limit=100)
    return len(hits.hits) == wanted


async def test_the_index_is_rebuilt_from_redis_and_catches_up_after_downtime(
    people: dict[str, User], secure: SecureStack
) -> None:
    ann = people["ann"]
    sid = room_id()
    word = f"walrus{sid[-6:]}"
    before = (await ann.post(sid, f"{word} before")).message
    await until_found(secure, ann, word, {(sid, before.seq)})
    stack = secure.stack
    assert stack.search is not None
    stack.search.kill9()
    during = (await ann.post(sid, f"{word} while the indexer is down")).message
    stack.start_search(**auth_env(secure), **NO_RATE)  # pending hints first
    await until_found(secure, ann, word, {(sid, before.seq), (sid, during.seq)})

    stack.search.stop()
    remove_index(stack.workdir)
    stack.start_search(**auth_env(secure), **NO_RATE)  # SERVING only once rebuilt
    assert await found(secure, ann, word) == {(sid, before.seq), (sid, during.seq)}


def remove_index(workdir: Path) -> None:
    for name in ("search.db", "search.db-wal", "search.db-shm"):
        (workdir / name).unlink(missing_ok=name != "search.db")
