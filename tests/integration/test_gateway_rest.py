"""The gateway's REST API (seeds 001/003) against the real stack, over HTTP."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest

from deploy.stack.running import Stack


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as client:
        yield client


@pytest.fixture
def api(stack: Stack, session_id: str) -> str:
    return f"{stack.gateway_url}/api/chat/session/{session_id}"


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.request(method, url, **kwargs) as reply:
        return reply.status, await reply.json(), reply


async def stored(http: aiohttp.ClientSession, api: str) -> tuple[Any, ...]:
    """Everything the session stores, without the access time every read moves."""
    status, body, reply = await call(http, "GET", api)
    assert status == 200
    del body["lastAccessedAt"]
    _, page, _ = await call(http, "GET", f"{api}/messages?limit=1000")
    return body, page["messages"], reply.headers["ETag"]


def assert_error(body: Any, code: str) -> str:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["message"])


async def test_new_session_has_empty_messages_times_and_version_zero(http, api):
    status, body, reply = await call(http, "GET", api)
    assert status == 200
    assert reply.headers["ETag"] == '"0"'
    assert set(body) == {"messages", "createdAt", "lastAccessedAt"}
    assert body["messages"] == []
    assert isinstance(body["createdAt"], int) and body["createdAt"] > 1_600_000_000_000
    assert body["lastAccessedAt"] >= body["createdAt"]


async def test_put_merges_the_patch_and_null_deletes(http, api):
    status, body, _ = await call(
        http, "PUT", api, json={"pendingMatch": {"tutor": {"id": 1}}, "step": "a", "x": 1}
    )
    assert (status, body) == (
        200,
        {"version": 1, "state": {"pendingMatch": {"tutor": {"id": 1}}, "step": "a", "x": 1}},
    )
    status, body, reply = await call(
        http, "PUT", api, json={"pendingMatch": {"score": 0.95, "tutor": None}, "step": None}
    )
    assert (status, body) == (
        200,
        {"version": 2, "state": {"pendingMatch": {"score": 0.95}, "x": 1}},
    )
    assert reply.headers["ETag"] == '"2"'
    status, body, reply = await call(http, "GET", api)
    assert body["pendingMatch"] == {"score": 0.95} and body["x"] == 1 and "step" not in body
    assert reply.headers["ETag"] == '"2"'


async def test_put_with_stale_expected_version_is_409_and_changes_nothing(http, api):
    await call(http, "PUT", api, json={"a": 1})
    before = await stored(http, api)
    status, body, _ = await call(http, "PUT", f"{api}?expectedVersion=0", json={"a": 2})
    assert status == 409
    assert_error(body, "ABORTED")
    assert await stored(http, api) == before
    status, body, _ = await call(http, "PUT", f"{api}?expectedVersion=1", json={"b": 2})
    assert (status, body) == (200, {"version": 2, "state": {"a": 1, "b": 2}})


async def test_post_message_is_201_and_a_repeated_client_message_id_200_with_the_original(
    http, api
):
    message = {"role": "user", "content": "hello", "user": "ann", "clientMessageId": "m-1"}
    status, first, _ = await call(http, "POST", f"{api}/messages", json=message)
    assert status == 201
    assert {k: first[k] for k in ("seq", "role", "content", "user")} == {
        "seq": 1,
        "role": "user",
        "content": "hello",
        "user": "ann",
    }
    assert isinstance(first["ts"], int) and first["ts"] > 1_600_000_000_000
    retry = {**message, "content": "hello (retry)"}
    status, again, _ = await call(http, "POST", f"{api}/messages", json=retry)
    assert (status, again) == (200, first)
    _, body, _ = await call(http, "GET", api)
    assert body["messages"] == [first]


async def test_messages_page_by_after_and_limit(http, api):
    for i in range(5):
        role = "user" if i % 2 == 0 else "assistant"
        status, _, _ = await call(
            http, "POST", f"{api}/messages", json={"role": role, "content": f"m{i}"}
        )
        assert status == 201
    status, page, _ = await call(http, "GET", f"{api}/messages?limit=2")
    assert status == 200
    assert [m["content"] for m in page["messages"]] == ["m0", "m1"]
    assert (page["hasMore"], page["lastSeq"]) == (True, 5)
    after = page["messages"][-1]["seq"]
    _, page, _ = await call(http, "GET", f"{api}/messages?after={after}&limit=2")
    assert [m["content"] for m in page["messages"]] == ["m2", "m3"]
    assert page["hasMore"] is True
    _, page, _ = await call(http, "GET", f"{api}/messages?after={page['messages'][-1]['seq']}")
    assert [(m["content"], m["role"]) for m in page["messages"]] == [("m4", "user")]
    assert page["hasMore"] is False
    _, whole, _ = await call(http, "GET", api)
    assert [m["content"] for m in whole["messages"]] == [f"m{i}" for i in range(5)]


BAD_INPUTS = [
    pytest.param("PUT", "", {"data": b"{not json"}, id="put-invalid-json"),
    pytest.param("PUT", "", {"data": b"[1, 2]"}, id="put-list-body"),
    pytest.param("PUT", "", {"data": b'"text"'}, id="put-string-body"),
    pytest.param("PUT", "", {"data": b""}, id="put-empty-body"),
    pytest.param("PUT", "", {"data": b'{"a": NaN}'}, id="put-nan"),
    pytest.param("PUT", "", {"json": {"messages": []}}, id="put-reserved-messages"),
    pytest.param("PUT", "", {"json": {"createdAt": 1}}, id="put-reserved-created-at"),
    pytest.param("PUT", "", {"json": {"lastAccessedAt": 1}}, id="put-reserved-last-accessed"),
    pytest.param("PUT", "?expectedVersion=-1", {"json": {"a": 9}}, id="put-negative-version"),
    pytest.param("PUT", "?expectedVersion=one", {"json": {"a": 9}}, id="put-word-version"),
    pytest.param("POST", "/messages", {"data": b"{"}, id="post-invalid-json"),
    pytest.param("POST", "/messages", {"json": {"role": "robot", "content": "x"}}, id="bad-role"),
    pytest.param("POST", "/messages", {"json": {"role": "user", "content": ""}}, id="empty"),
    pytest.param("POST", "/messages", {"json": {"role": "user", "content": "  "}}, id="blank"),
    pytest.param("POST", "/messages", {"json": {"role": "user"}}, id="no-content"),
    pytest.param("POST", "/messages", {"json": {"role": "user", "content": 1}}, id="int-content"),
    pytest.param(
        "POST", "/messages", {"json": {"role": "user", "content": "x", "to": "b"}}, id="extra-key"
    ),
    pytest.param(
        "POST", "/messages", {"data": b'{"role": "user", "content": "\\ud800"}'}, id="surrogate"
    ),
    pytest.param("GET", "/messages?after=-1", {}, id="negative-after"),
    pytest.param("GET", "/messages?limit=ten", {}, id="word-limit"),
    pytest.param("GET", "/messages?limit=1.5", {}, id="fraction-limit"),
    pytest.param("GET", "/messages?limit=99999999999", {}, id="huge-limit"),
]


@pytest.mark.parametrize(("method", "suffix", "kwargs"), BAD_INPUTS)
async def test_bad_input_is_400_with_error_body_and_changes_nothing(
    http, api, method, suffix, kwargs
):
    await call(http, "PUT", api, json={"keep": {"me": 1}})
    await call(http, "POST", f"{api}/messages", json={"role": "user", "content": "kept"})
    before = await stored(http, api)
    status, body, _ = await call(http, method, f"{api}{suffix}", **kwargs)
    assert status == 400
    assert_error(body, "INVALID_ARGUMENT")
    assert await stored(http, api) == before


async def test_reserved_key_error_names_the_key(http, api):
    status, body, _ = await call(http, "PUT", api, json={"ok": 1, "createdAt": 5})
    assert status == 400
    assert "createdAt" in assert_error(body, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    ("method", "suffix", "kwargs"),
    [
        pytest.param("GET", "", {}, id="get-session"),
        pytest.param("PUT", "", {"json": {"a": 1}}, id="put-session"),
        pytest.param("GET", "/messages", {}, id="list-messages"),
        pytest.param(
            "POST", "/messages", {"json": {"role": "user", "content": "x"}}, id="post-message"
        ),
    ],
)
async def test_invalid_session_id_is_400(http, stack, method, suffix, kwargs):
    url = f"{stack.gateway_url}/api/chat/session/bad%20id!{suffix}"
    status, body, _ = await call(http, method, url, **kwargs)
    assert status == 400
    assert "session_id" in assert_error(body, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    "path",
    ["/nope", "/api/chat/session", "/api/chat/session/a/b", "/api/chat/session/a/messages/1"],
)
async def test_unknown_route_is_404_with_error_body(http, stack, path):
    status, body, _ = await call(http, "GET", f"{stack.gateway_url}{path}")
    assert status == 404
    assert_error(body, "NOT_FOUND")


async def test_wrong_method_is_405_with_error_body(http, api):
    status, body, reply = await call(http, "DELETE", api)
    assert status == 405
    assert "PUT" in reply.headers["Allow"]
    assert_error(body, "UNIMPLEMENTED")


async def test_body_over_the_limit_is_413_and_changes_nothing(http, api):
    before = await stored(http, api)
    big = b'{"a": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    status, body, _ = await call(http, "PUT", api, data=io.BytesIO(big))
    assert status == 413
    assert_error(body, "INVALID_ARGUMENT")
    assert await stored(http, api) == before


async def test_healthz_is_ok_while_the_session_service_serves(http, stack):
    status, body, _ = await call(http, "GET", f"{stack.gateway_url}/healthz")
    assert (status, body) == (200, {"status": "ok"})
