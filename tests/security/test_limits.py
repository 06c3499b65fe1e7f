"""Abuse limits with AUTH_MODE=jwt: per-user request rate and model-token budget, answered with
RESOURCE_EXHAUSTED / 429 and when to retry. Each test names what it attacks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import grpc
import pytest

from deploy.stack.waits import async_eventually
from durablechat.v1 import session_pb2
from tests.support.secure import SecureStack, room_id, secure_stack

RATE = 30
IP_RATE = 40


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    limits = {"RATE_USER_PER_MIN": str(RATE), "TOKENS_PER_MIN": "30", "TOKENS_PER_DAY": "0"}
    gateway = {"RATE_IP_PER_MIN": str(IP_RATE), "MAX_SOCKETS_PER_USER": "2"}
    with secure_stack(
        tmp_path_factory.mktemp("limits"), pod_env=limits, gateway_env=gateway
    ) as running:
        yield running


def retry_after_ms(exc: grpc.aio.AioRpcError) -> int:
    trailers = dict(exc.trailing_metadata() or ())
    return int(trailers["dc-retry-after-ms"])


async def test_request_flood_is_refused_with_retry_information(secure: SecureStack) -> None:
    """Attack: one user floods a pod with calls (through both pods, forwarding counted once)."""
    flooder = secure.user("flooder", "pod-b")
    sid = room_id()
    try:
        await flooder.post(sid, "mine")
        refused = None
        for _ in range(RATE):
            try:
                await flooder.call("GetSession", session_pb2.GetSessionRequest(session_id=sid))
            except grpc.aio.AioRpcError as exc:
                refused = exc
                break
        assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert 0 < retry_after_ms(refused) <= 60_000 / RATE + 1
        assert "too many requests" in (refused.details() or "")
        # Posing as a forwarded call (the hop header pods add) does not skip the count.
        with pytest.raises(grpc.aio.AioRpcError) as posing:
            await flooder.stub.GetSession(
                session_pb2.GetSessionRequest(session_id=sid),
                metadata=(*flooder.metadata, ("dc-hops", "1")),
                timeout=15,
            )
        assert posing.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await flooder.close()
    async with aiohttp.ClientSession() as http:  # the same user through the gateway: 429
        headers = {"Authorization": f"Bearer {secure.token('flooder')}"}
        async with http.get(
            f"{secure.stack.gateway_url}/api/chat/session/{sid}", headers=headers
        ) as response:
            assert response.status == 429
            assert int(response.headers["Retry-After"]) >= 1
            assert (await response.json())["error"]["retryAfterMs"] > 0
    other = secure.user("bystander")
    try:  # another user is not affected
        await other.post(room_id(), "fine")
    finally:
        await other.close()


async def test_token_budget_exhaustion_refuses_the_next_prompt(secure: SecureStack) -> None:
    """Attack: one user burns model tokens beyond their per-minute budget."""
    spender = secure.user("spender")
    sid = room_id()
    try:
        await spender.call(
            "SendPrompt", session_pb2.SendPromptRequest(session_id=sid, content="go tokens=40")
        )

        async def charged() -> bool:
            usage = await spender.call("GetUserUsage", session_pb2.GetUserUsageRequest())
            return bool(usage.answers == 1)

        await async_eventually(charged, within=20, interval=0.2)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await spender.call(
                "SendPrompt", session_pb2.SendPromptRequest(session_id=sid, content="more")
            )
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "budget" in (err.value.details() or "")
        assert retry_after_ms(err.value) > 0
        listed = await spender.call("ListMessages", session_pb2.ListMessagesRequest(session_id=sid))
        assert [m.content for m in listed.messages if m.role == 1] == ["go tokens=40"]
    finally:
        await spender.close()


async def test_a_user_cannot_hold_more_sockets_than_the_cap(secure: SecureStack) -> None:
    """Attack: one user opens sockets without end."""
    protocols = ("durablechat", f"bearer.{secure.token('hoarder')}")
    ws_url = f"{secure.stack.gateway_url.replace('http', 'ws')}/ws/{room_id()}"
    async with aiohttp.ClientSession() as http:
        first = await http.ws_connect(ws_url, protocols=protocols)
        second = await http.ws_connect(ws_url, protocols=protocols)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(ws_url, protocols=protocols)
        assert refused.value.status == 429
        await first.close()

        async def reconnect() -> aiohttp.ClientWebSocketResponse:
            return await http.ws_connect(ws_url, protocols=protocols)

        # The slot is free once the server has finished the closed socket's handler.
        third = await async_eventually(reconnect, within=5, interval=0.05)
        await second.close()
        await third.close()


async def test_ip_flood_is_refused_and_forwarded_for_cannot_dodge_it(secure: SecureStack) -> None:
    """(It uses up 127.0.0.1's gateway requests: later tests here call the pods.) Attack: one
    address floods
    the gateway, claiming other addresses in X-Forwarded-For
    (the gateway trusts that header only from TRUSTED_PROXIES, none here)."""
    url = f"{secure.stack.gateway_url}/api/chat/session/{room_id()}"
    statuses = []
    async with aiohttp.ClientSession() as http:
        for i in range(IP_RATE + 1):  # no token: 401s, but each counts against the address
            headers = {"X-Forwarded-For": f"10.0.0.{i}"}
            async with http.get(url, headers=headers) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                    assert "too many requests from 127.0.0.1" in await response.text()
                    break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}


async def test_parallel_prompts_cannot_overspend_the_budget(secure: SecureStack) -> None:
    """Attack: fire many prompts at once, before any answer is charged (each prompt reserves
    tokens from the budget; here one reservation is the whole per-minute budget)."""
    racer = secure.user("racer")
    try:
        rooms = [room_id() for _ in range(4)]

        async def prompt(sid: str) -> grpc.StatusCode:
            request = session_pb2.SendPromptRequest(session_id=sid, content="go tokens=2")
            try:
                await racer.call("SendPrompt", request)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(prompt(sid) for sid in rooms))
        assert sorted(c.name for c in codes) == ["OK"] + ["RESOURCE_EXHAUSTED"] * 3
    finally:
        await racer.close()
