"""Abuse limits with AUTH_MODE=jwt: per-user request rate and model-token budget, answered with
RESOURCE_EXHAUSTED / 429 and when to retry. Each test names what it attacks."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import grpc
import pytest

from durablechat.v1 import session_pb2
from tests.helpers import async_eventually
from tests.security.secure_stack import SecureStack, room_id, secure_stack

RATE = 30


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    limits = {"RATE_USER_PER_MIN": str(RATE), "TOKENS_PER_MIN": "30", "TOKENS_PER_DAY": "0"}
    with secure_stack(tmp_path_factory.mktemp("limits"), pod_env=limits) as running:
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
