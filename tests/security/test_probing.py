"""Probing session ids must not fill Redis: with access control on, a read (or any call that
needs an existing session) of an id nobody ever used is NOT_FOUND and stores no key, through
the pod that would own it and through the other one (a forwarded call)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import redis

from session_service.rpc.methods import NEEDS_EXISTING
from tests.support.secure import SecureStack, every_request, room_id, secure_stack


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    with secure_stack(tmp_path_factory.mktemp("probing")) as running:
        yield running


def session_keys(secure: SecureStack, sid: str) -> list[bytes]:
    assert secure.stack.redis is not None
    client = redis.Redis.from_url(secure.stack.redis.url)
    try:
        return sorted(client.scan_iter(match=f"*{sid}*", count=1000))
    finally:
        client.close()


async def test_probing_unknown_session_ids_stores_nothing(secure: SecureStack) -> None:
    probed: list[str] = []
    for pod in ("pod-a", "pod-b"):
        mallory = secure.user("mallory", pod)
        try:
            for method, request in every_request("x").items():
                if method not in NEEDS_EXISTING:
                    continue
                sid = room_id()
                request.session_id = sid
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await mallory.call(method, request)
                assert refused.value.code() == grpc.StatusCode.NOT_FOUND, method
                probed.append(sid)
            sid = room_id()
            stream = mallory.subscribe(sid)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stream.read()
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            probed.append(sid)
        finally:
            await mallory.close()
    assert len(probed) == 2 * len(NEEDS_EXISTING)
    assert {sid: session_keys(secure, sid) for sid in probed if session_keys(secure, sid)} == {}


async def test_a_probed_id_can_still_be_claimed(secure: SecureStack) -> None:
    """The cheap refusal must not hide sessions that exist or stop a legitimate claim."""
    sid = room_id()
    ann, bob = secure.user("ann"), secure.user("bob", "pod-b")
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await ann.call("GetSession", every_request(sid)["GetSession"])
        await ann.post(sid, "mine")
        reply = await ann.call("GetSession", every_request(sid)["GetSession"])
        assert reply.session.message_count == 1
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await bob.call("GetSession", every_request(sid)["GetSession"])
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await ann.close()
        await bob.close()
