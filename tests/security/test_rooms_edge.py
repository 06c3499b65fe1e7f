"""The access battery through the gateway (REST, SSE, WebSocket) with AUTH_MODE=jwt, plus CORS.
Each test names what it attacks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import grpc
import pytest

from common.auth import mint
from deploy.stack.waits import async_eventually
from durablechat.v1 import access_pb2, cluster_pb2, cluster_pb2_grpc
from tests.support.secure import SecureStack, User, room_id, secure_stack

ALLOWED = "http://allowed.test"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    gateway = {"AUTH_DEV_LOGIN": "true", "CORS_ORIGINS": ALLOWED}
    with secure_stack(tmp_path_factory.mktemp("edge"), gateway_env=gateway) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def auth(secure: SecureStack, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secure.token(user)}"}


def routes(base: str, sid: str) -> list[tuple[str, str, object]]:
    api = f"{base}/api/chat/session/{sid}"
    return [
        ("GET", api, None),
        ("PUT", api, {"x": 1}),
        ("GET", f"{api}/messages", None),
        ("POST", f"{api}/messages", {"role": "user", "content": "intruder"}),
        ("POST", f"{api}/cancel", None),
        ("GET", f"{api}/events?after=0", None),
        ("PATCH", f"{base}/api/threads/{sid}", {"title": "mine", "pinned": True}),
        ("POST", f"{base}/api/threads/{sid}/read", None),
        ("DELETE", f"{base}/api/threads/{sid}", None),
        ("POST", f"{base}/api/threads/{sid}/restore", None),
        ("GET", f"{base}/api/threads/{sid}/export", None),
        ("POST", f"{api}/messages/2/edit", {"content": "intruder"}),
        ("POST", f"{api}/messages/2/regenerate", None),
        ("POST", f"{api}/branch", {"messageSeq": 2}),
        ("POST", f"{api}/messages/2/feedback", {"rating": "down"}),
        ("POST", f"{base}/api/threads/{sid}/fork", {"atSeq": 2}),
        ("GET", f"{api}/attachments/{'0' * 64}", None),
    ]


async def test_every_route_needs_a_token(secure: SecureStack, http: aiohttp.ClientSession) -> None:
    """Attack: call every route with no token, a forged one, and one in the URL."""
    base = secure.stack.gateway_url
    forged = {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbm4ifQ."}
    for method, url, body in routes(base, room_id()):
        for headers in ({}, forged):
            async with http.request(method, url, json=body, headers=headers) as response:
                assert response.status == 401, (method, url)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert (await response.json())["error"]["code"] == "UNAUTHENTICATED"
    token = secure.token("ann")
    async with http.get(f"{base}/api/chat/session/{room_id()}?access_token={token}") as response:
        assert response.status == 401  # tokens in URLs are never read


async def test_idor_every_route_on_another_users_session_is_404(
    secure: SecureStack, http: aiohttp.ClientSession
) -> None:
    """Attack: a second user uses every route on a session they do not belong to."""
    base, sid = secure.stack.gateway_url, room_id()
    async with http.post(
        f"{base}/api/chat/session/{sid}/messages",
        json={"role": "user", "content": "ann's secret"},
        headers=auth(secure, "ann"),
    ) as response:
        assert response.status == 201
        assert (await response.json())["user"] == "ann"
    for method, url, body in routes(base, sid):
        async with http.request(method, url, json=body, headers=auth(secure, "eve")) as response:
            assert response.status == 404, (method, url)
            assert (await response.json())["error"]["message"] == "session not found"
    async with http.get(
        f"{base}/api/chat/session/{sid}/messages", headers=auth(secure, "ann")
    ) as response:
        assert [m["content"] for m in (await response.json())["messages"]] == ["ann's secret"]


async def test_viewer_gets_403_on_writes(secure: SecureStack, http: aiohttp.ClientSession) -> None:
    """Attack: a viewer posts and patches through REST."""
    ann = secure.user("ann")
    try:
        sid = (await ann.create_room()).session_id
        await ann.set_member(sid, "vic", access_pb2.ACCESS_ROLE_VIEWER)
    finally:
        await ann.close()
    base = secure.stack.gateway_url
    for method, url, body in routes(base, sid)[1:4:2]:  # PUT state, POST message
        async with http.request(method, url, json=body, headers=auth(secure, "vic")) as response:
            assert response.status == 403, (method, url)
    async with http.get(f"{base}/api/chat/session/{sid}", headers=auth(secure, "vic")) as response:
        assert response.status == 200


async def test_websocket_token_by_subprotocol_or_login_cookie_and_foreign_threads_refused(
    secure: SecureStack, http: aiohttp.ClientSession
) -> None:
    """Attack: open someone else's thread over the WebSocket; open one with no token."""
    base = secure.stack.gateway_url
    ws_base = base.replace("http", "ws")
    sid = room_id()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{ws_base}/ws/{sid}")
    assert refused.value.status == 401
    protocols = ("durablechat", f"bearer.{secure.token('ann')}")
    async with http.ws_connect(f"{ws_base}/ws/{sid}", protocols=protocols) as ws:
        assert ws.protocol == "durablechat"
        await ws.send_str("(GET_HISTORY)")
        assert (await ws.receive_str()).startswith("[")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as eve:
        async with eve.post(f"{base}/api/login", json={"user": "eve"}) as login:
            assert login.status == 200
            assert "HttpOnly" in login.headers["Set-Cookie"]
            assert "SameSite=Strict" in login.headers["Set-Cookie"]
        with pytest.raises(aiohttp.WSServerHandshakeError) as foreign:
            await eve.ws_connect(f"{ws_base}/ws/{sid}")  # ann's thread, eve's cookie
        assert foreign.value.status == 404
        async with eve.ws_connect(f"{ws_base}/ws/{room_id()}") as own:  # a new one is hers
            await own.send_str("(GET_HISTORY)")
            assert await own.receive_str() == "[]"


async def test_removed_member_websocket_is_closed(
    secure: SecureStack, http: aiohttp.ClientSession
) -> None:
    """Attack: stay connected after being removed from the room."""
    ann: User = secure.user("ann")
    try:
        sid = (await ann.create_room()).session_id
        await ann.set_member(sid, "bob", access_pb2.ACCESS_ROLE_MEMBER)
        ws_url = f"{secure.stack.gateway_url.replace('http', 'ws')}/ws/{sid}"
        protocols = ("durablechat", f"bearer.{secure.token('bob')}")
        async with http.ws_connect(ws_url, protocols=protocols) as ws:
            await ws.send_str("(GET_HISTORY)")
            assert await ws.receive_str() == "[]"
            await ann.set_member(sid, "bob", access_pb2.ACCESS_ROLE_UNSPECIFIED)
            frames = []
            async for message in ws:
                frames.append(message.data)
            assert ws.close_code == 1008, (frames, ws.exception())
            assert frames == ["[ERROR] session not found"]
    finally:
        await ann.close()


async def test_cors_only_for_configured_origins(
    secure: SecureStack, http: aiohttp.ClientSession
) -> None:
    """Attack: a page on a foreign origin reads or writes the API, or opens a WebSocket."""
    base, sid = secure.stack.gateway_url, room_id()
    api = f"{base}/api/chat/session/{sid}"
    preflight = {"Access-Control-Request-Method": "POST"}
    async with http.options(api, headers={"Origin": ALLOWED, **preflight}) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    evil = "http://evil.test"
    async with http.options(api, headers={"Origin": evil, **preflight}) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers
    headers = {"Origin": ALLOWED, **auth(secure, "ann")}
    async with http.put(api, json={"a": 1}, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    async with http.get(api, headers={**headers, "Origin": evil}) as response:
        assert "Access-Control-Allow-Origin" not in response.headers
    async with http.put(api, json={"a": 2}, headers={**headers, "Origin": evil}) as response:
        assert response.status == 403
    protocols = ("durablechat", f"bearer.{secure.token('ann')}")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(
            f"{base.replace('http', 'ws')}/ws/{sid}", protocols=protocols, origin=evil
        )
    assert refused.value.status == 403
    async with http.get(api, headers=auth(secure, "ann")) as response:
        assert (await response.json())["a"] == 1  # the foreign write stored nothing


async def test_a_users_stream_outlives_the_token_of_the_socket_that_opened_it(
    secure: SecureStack, http: aiohttp.ClientSession
) -> None:
    """The gateway's stream for a user is reopened (the session moves) after the token of its
    first socket expired: it must use a live token, so the user's other sockets keep working."""
    base, sid = secure.stack.gateway_url, room_id()
    ws_url = f"{base.replace('http', 'ws')}/ws/{sid}"
    expiring = mint(secure.secret, "ann", -3)  # inside the 5 s clock-skew leeway for ~2 s
    first = await http.ws_connect(ws_url, protocols=("durablechat", f"bearer.{expiring}"))
    second = await http.ws_connect(
        ws_url, protocols=("durablechat", f"bearer.{secure.token('ann')}")
    )

    async def expired() -> bool:
        headers = {"Authorization": f"Bearer {expiring}"}
        async with http.get(f"{base}/api/me", headers=headers) as response:
            return bool((await response.json())["user"] == "")

    await async_eventually(expired, within=10, interval=0.2)
    for address in secure.stack.pod_addrs.values():  # the holder hands the session off
        async with grpc.aio.insecure_channel(address) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            request = cluster_pb2.HandOffRequest(session_id=sid)
            await stub.HandOff(request, timeout=10, metadata=secure.stack.cluster_metadata)
    await second.send_str("still here tokens=3")
    frames = [await second.receive_str(timeout=20)]
    while frames[-1] != "[DONE]":
        frames.append(await second.receive_str(timeout=20))
    assert frames[0] == "[LOADING]" and "".join(frames[1:-1]) == "tok0 tok1 tok2"
    await first.close()
    await second.close()
