"""The Python client with AUTH_MODE=jwt: its token reaches the pods on every call."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from durablechat_client import ChatSessionClient
from tests.support.secure import SecureStack, room_id, secure_stack


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    with secure_stack(tmp_path_factory.mktemp("client-auth")) as running:
        yield running


async def test_the_python_client_carries_a_token(secure: SecureStack) -> None:
    """The published Python client works with AUTH_MODE=jwt, and without a token it cannot."""
    sid = room_id()
    address = secure.stack.pod_addrs["pod-b"]
    async with ChatSessionClient(address, sid, token=secure.token("cat")) as chat:
        await chat.set_pending_match({"tutor": 1})
        answer = await chat.ask("hi tokens=3")
        messages = await chat.get_messages()
    assert answer.status == "completed"
    assert [m["user"] for m in messages if m["role"] == "user"] == ["cat"]
    async with ChatSessionClient(address, sid) as anonymous:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await anonymous.get_state()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
