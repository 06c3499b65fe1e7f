"""The gRPC fan-out (gateway/fanout_server.py) with AUTH_MODE=jwt, over gRPC and gRPC-web through
Envoy: the same refusals as the owner's, with the same status and message; a removed member's
streams end at once; the owner serves one stream per user however many tabs they open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import grpc
import pytest

from bench.grpc_load import GrpcWebError, grpc_web_stream
from common.auth import mint
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, started
from durablechat.v1 import (
    access_pb2,
    cluster_pb2,
    cluster_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
)
from tests.support.secure import User, room_id

MEMBER = access_pb2.ACCESS_ROLE_MEMBER
VIEWER = access_pb2.ACCESS_ROLE_VIEWER
NONE = access_pb2.ACCESS_ROLE_UNSPECIFIED
SUBSCRIBE = "durablechat.v1.SessionService/Subscribe"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    spec = StackSpec(auth=True, envoy=True, token_delay_ms=1)
    with started(tmp_path_factory.mktemp("fanout-jwt"), spec) as running:
        yield running


def token(stack: Stack, name: str) -> str:
    assert stack.auth_secret_file is not None
    return mint(stack.auth_secret_file.read_bytes().strip(), name, 600)


@pytest.fixture
async def users(stack: Stack) -> AsyncIterator[dict[str, User]]:
    """Each name on the pod ("ann") and on the fan-out ("ann@fan")."""
    made = {}
    for name in ("ann", "bob", "eve"):
        made[name] = User(name, token(stack, name), stack.session_addr)
        made[f"{name}@fan"] = User(name, token(stack, name), stack.fanout_addr)
    try:
        yield made
    finally:
        for user in made.values():
            await user.close()


async def web_subscribe(stack: Stack, http: aiohttp.ClientSession, who: str, sid: str) -> Any:
    req = session_pb2.SubscribeRequest(session_id=sid, after_seq=0).SerializeToString()
    headers = {"authorization": f"Bearer {token(stack, who)}"} if who else {}
    return grpc_web_stream(http, stack.envoy_url, SUBSCRIBE, req, headers)


async def refusal(stream: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stream.read()
    return err.value.code(), err.value.details() or ""


async def web_refusal(stream: AsyncIterator[bytes]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(GrpcWebError) as err:
        async for _ in stream:
            pass
    return err.value.code, err.value.message


async def until_presence(stream: Any) -> list[str]:
    kinds = []
    while True:
        reply = await stream.read()
        kinds.append(reply.event.WhichOneof("kind"))
        if kinds[-1] == "presence_changed":
            return list(reply.event.presence_changed.users)


async def owner_streams(stack: Stack, sid: str) -> int:
    async with grpc.aio.insecure_channel(stack.session_addr) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        request = cluster_pb2.GetPodStatusRequest(session_id=sid)
        reply = await stub.GetPodStatus(request, metadata=stack.cluster_metadata, timeout=10)
        return reply.session_subscribers


async def test_an_outsider_is_refused_as_the_owner_refuses(
    stack: Stack, users: dict[str, User]
) -> None:
    """Attack: read someone else's room through the fan-out."""
    sid = room_id()
    await users["ann"].post(sid, "private")
    want = await refusal(users["eve"].subscribe(sid))
    assert want[0] == grpc.StatusCode.NOT_FOUND
    assert await refusal(users["eve@fan"].subscribe(sid)) == want
    async with aiohttp.ClientSession() as http:
        assert await web_refusal(await web_subscribe(stack, http, "eve", sid)) == want


async def test_no_token_is_unauthenticated_as_on_the_owner(
    stack: Stack, users: dict[str, User]
) -> None:
    sid = room_id()
    await users["ann"].post(sid, "private")
    async with grpc.aio.insecure_channel(stack.session_addr) as pod:
        request = session_pb2.SubscribeRequest(session_id=sid)
        want = await refusal(session_pb2_grpc.SessionServiceStub(pod).Subscribe(request))
    assert want[0] == grpc.StatusCode.UNAUTHENTICATED
    async with aiohttp.ClientSession() as http:
        assert await web_refusal(await web_subscribe(stack, http, "", sid)) == want


async def test_a_removed_member_loses_every_stream_at_once(
    stack: Stack, users: dict[str, User]
) -> None:
    """Attack: keep reading a room after being removed, from several tabs."""
    ann = users["ann"]
    sid = (await ann.create_room()).session_id
    await ann.set_member(sid, "bob", MEMBER)
    tabs = [users["bob@fan"].subscribe(sid) for _ in range(3)]
    for tab in tabs:
        assert "bob" in await until_presence(tab)
    ann_tab = users["ann@fan"].subscribe(sid)
    await until_presence(ann_tab)
    async with aiohttp.ClientSession() as http:
        web_tab = await web_subscribe(stack, http, "bob", sid)
        web_done = asyncio.ensure_future(web_refusal(web_tab))
        assert await owner_streams(stack, sid) == 2  # one per user, not one per tab
        await ann.set_member(sid, "bob", NONE)
        for tab in tabs:
            kinds = []
            with pytest.raises(grpc.aio.AioRpcError) as err:
                while True:
                    reply = await asyncio.wait_for(tab.read(), 10)
                    assert reply is not grpc.aio.EOF
                    kinds.append(reply.event.WhichOneof("kind"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert "access_changed" in kinds
        code, _ = await asyncio.wait_for(web_done, 10)
        assert code == grpc.StatusCode.NOT_FOUND
    await ann.post(sid, "still here")
    while (await ann_tab.read()).event.WhichOneof("kind") != "message_appended":
        pass  # ann's stream goes on
    assert await refusal(users["bob@fan"].subscribe(sid)) == await refusal(
        users["bob"].subscribe(sid)
    )
    ann_tab.cancel()


async def test_a_viewer_follows_and_presence_is_the_owners(
    stack: Stack, users: dict[str, User]
) -> None:
    ann = users["ann"]
    sid = (await ann.create_room()).session_id
    await ann.set_member(sid, "bob", VIEWER)
    first = users["bob@fan"].subscribe(sid)
    assert await until_presence(first) == ["bob"]
    second = users["bob@fan"].subscribe(sid)  # bob already online: told the list alone
    assert await until_presence(second) == ["bob"]
    first.cancel()
    second.cancel()
