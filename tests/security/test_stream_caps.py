"""Concurrent Subscribe streams per user are capped (MAX_STREAMS_PER_USER), AUTH_MODE=jwt, two
pods: counted by the owner, so a stream entering through the other pod counts once and posing as
a forwarded call does not skip the count."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from deploy.stack.waits import async_eventually
from durablechat.v1 import access_pb2, session_pb2
from tests.support.secure import SecureStack, User, room_id, secure_stack

CAP = 3


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    pod_env = {"MAX_STREAMS_PER_USER": str(CAP), "RATE_USER_PER_MIN": "0"}
    with secure_stack(tmp_path_factory.mktemp("streams"), pod_env=pod_env) as running:
        yield running


async def opened(user: User, sid: str, metadata: tuple[tuple[str, str], ...] = ()) -> Any:
    """A Subscribe stream that has delivered its first event (so the owner serves it)."""
    request = session_pb2.SubscribeRequest(session_id=sid, after_seq=0)
    call = user.stub.Subscribe(request, metadata=(*user.metadata, *metadata))
    await call.read()
    return call


async def refused(user: User, sid: str, *metadata: tuple[str, str]) -> grpc.aio.AioRpcError:
    call = None
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        call = await opened(user, sid, metadata)
    assert call is None
    return caught.value


async def test_subscribe_flood_stops_at_user_limit(secure: SecureStack) -> None:
    """Attack: one user opens Subscribe streams without end (each holds memory and a queue on
    the owner), through both pods."""
    on_a, on_b = secure.user("streamer", "pod-a"), secure.user("streamer", "pod-b")
    other = secure.user("stream-bystander", "pod-b")
    sid = room_id()
    streams: list[Any] = []
    try:
        await on_a.post(sid, "watch me")
        await on_a.set_member(sid, other.name, access_pb2.ACCESS_ROLE_VIEWER)
        for user in (on_a, on_b, on_b):  # one pod owns `sid`: some of these are forwarded
            streams.append(await opened(user, sid))
        for user in (on_a, on_b):
            exc = await refused(user, sid)
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "MAX_STREAMS_PER_USER" in (exc.details() or ""), exc.details()
        posing = await refused(on_b, sid, ("dc-hops", "1"))  # as if forwarded by a pod
        assert posing.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        streams.append(await opened(other, sid))  # another user is not affected

        streams.pop(0).cancel()  # one closed: the user may open one again

        async def reopened() -> bool:
            try:
                streams.append(await opened(on_b, sid))
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                return False
            return True

        await async_eventually(reopened, within=10, interval=0.1)
        exc = await refused(on_a, sid)
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        for call in streams:
            call.cancel()
        for user in (on_a, on_b, other):
            await user.close()
