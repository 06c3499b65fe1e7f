"""The gateway's gRPC fan-out (gateway/fanout_server.py) behind a real Envoy: Subscribe over gRPC
and gRPC-web costs the owner one stream per gateway and user, gives exactly the owner's events
for any cursor, keeps streaming across an owner hand-off, and cuts only the slow subscriber."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Any

import aiohttp
import grpc
import pytest

from bench.grpc_load import GrpcWebError, grpc_web_stream
from deploy.stack.running import Stack
from deploy.stack.spec import StackSpec, started
from durablechat.v1 import cluster_pb2, cluster_pb2_grpc, session_pb2, session_pb2_grpc
from tests.support.grpc_client import SessionClient, events_until

WINDOW = 8
"""FANOUT_WINDOW_EVENTS here: cursors older than the newest 8 log events are relayed."""
QUEUE = 8
"""FANOUT_STREAM_QUEUE here."""
SUBSCRIBE = "durablechat.v1.SessionService/Subscribe"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    spec = StackSpec(
        token_delay_ms=1,
        envoy=True,
        gateway_env={"FANOUT_WINDOW_EVENTS": str(WINDOW), "FANOUT_STREAM_QUEUE": str(QUEUE)},
    )
    with started(tmp_path_factory.mktemp("fanout"), spec) as running:
        yield running


async def owner_streams(stack: Stack, sid: str) -> int:
    """The Subscribe streams the session's pod serves for `sid` (GetPodStatus)."""
    async with grpc.aio.insecure_channel(stack.session_addr) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        request = cluster_pb2.GetPodStatusRequest(session_id=sid)
        reply = await stub.GetPodStatus(request, metadata=stack.cluster_metadata, timeout=10)
        return reply.session_subscribers


def request(sid: str, after_seq: int | None = None, after_offset: int = 0) -> Any:
    req = session_pb2.SubscribeRequest(session_id=sid, after_offset=after_offset)
    if after_seq is not None:
        req.after_seq = after_seq
    return req


async def web_events(http: aiohttp.ClientSession, url: str, req: Any) -> AsyncIterator[Any]:
    async for data in grpc_web_stream(http, url, SUBSCRIBE, req.SerializeToString()):
        yield session_pb2.SubscribeResponse.FromString(data)


async def until_caught_up(replies: AsyncIterable[Any]) -> list[bytes]:
    """The encoded replies up to and including CaughtUp."""
    out = []
    async for reply in replies:
        out.append(reply.SerializeToString())
        if reply.event.WhichOneof("kind") == "caught_up":
            return out
    raise AssertionError("stream ended before CaughtUp")


async def answer_of(replies: AsyncIterable[Any], answer_seq: int) -> str:
    async for reply in replies:
        ended = reply.event.answer_ended
        if (
            reply.event.WhichOneof("kind") == "answer_ended"
            and ended.message.answer_seq == answer_seq
        ):
            return str(ended.message.content)
    raise AssertionError("stream ended before the answer did")


async def history(client: SessionClient, sid: str) -> None:
    """A log with two answered prompts and state changes: more events than the window."""
    for n in range(3):
        sent = await client.prompt(sid, f"tokens={3 + n}", client_id=f"{sid}-p{n}")
        await events_until(client.subscribe(sid, after_seq=sent.answer_seq), "answer_ended")
        await client.patch(sid, f'{{"n":{n}}}')


async def test_many_grpc_and_grpc_web_subscribers_cost_the_owner_one_stream(stack: Stack) -> None:
    sid = "fan-many"
    direct = SessionClient(stack.session_addr)
    edge = SessionClient(stack.envoy_url.removeprefix("http://"))
    fanout = SessionClient(stack.fanout_addr)
    try:
        await direct.append(sid, "hello")
        async with aiohttp.ClientSession() as http:
            grpc_calls = [edge.subscribe(sid) for _ in range(10)]
            grpc_calls += [fanout.subscribe(sid) for _ in range(5)]
            web = [web_events(http, stack.envoy_url, request(sid)) for _ in range(10)]
            streams: list[AsyncIterable[Any]] = [*grpc_calls, *web]
            await asyncio.gather(*(until_caught_up(s) for s in streams))
            assert await owner_streams(stack, sid) == 1
            async with http.get(f"{stack.gateway_url}/metrics") as reply:
                gauges = (await reply.text()).splitlines()
            assert any(
                g.startswith("dc_gateway_fanout_feeds ") and float(g.split()[1]) >= 1
                for g in gauges
            )
            sent = await direct.prompt(sid, "tokens=5")
            texts = await asyncio.gather(*(answer_of(s, sent.answer_seq) for s in streams))
            assert set(texts) == {"tok0 tok1 tok2 tok3 tok4"}
            for call in grpc_calls:
                call.cancel()
            for stream in web:
                await stream.aclose()  # type: ignore[attr-defined]
    finally:
        for client in (direct, edge, fanout):
            await client.close()


@pytest.mark.parametrize(
    "after_seq",
    [None, 0, 1, 5, "window", "last"],
    ids=["now", "from-0", "seq-1", "seq-5", "window-edge", "last"],
)
async def test_resume_from_a_cursor_gives_exactly_the_owners_events(
    stack: Stack, after_seq: Any
) -> None:
    sid = f"fan-resume-{after_seq}"
    direct = SessionClient(stack.session_addr)
    edge = SessionClient(stack.envoy_url.removeprefix("http://"))
    try:
        await history(direct, sid)
        last = (await direct.get(sid)).last_seq
        assert last > WINDOW
        holding = edge.subscribe(sid)  # the feed: every later stream is served from its window
        await until_caught_up(holding)
        cursor = {"window": last - WINDOW, "last": last}.get(after_seq, after_seq)
        owner = direct.stub.Subscribe(request(sid, cursor))
        want = await until_caught_up(owner)
        got_grpc = edge.stub.Subscribe(request(sid, cursor))
        async with aiohttp.ClientSession() as http:
            got_web = await until_caught_up(web_events(http, stack.envoy_url, request(sid, cursor)))
        assert await until_caught_up(got_grpc) == want
        assert got_web == want
        for call in (holding, owner, got_grpc):
            call.cancel()
    finally:
        await direct.close()
        await edge.close()


async def test_a_cursor_older_than_the_window_is_relayed_from_the_owner(stack: Stack) -> None:
    sid = "fan-old"
    direct = SessionClient(stack.session_addr)
    fanout = SessionClient(stack.fanout_addr)
    try:
        await history(direct, sid)
        holding = fanout.subscribe(sid)
        await until_caught_up(holding)
        old = fanout.subscribe(sid, after_seq=1)
        got = await until_caught_up(old)
        assert got == await until_caught_up(direct.stub.Subscribe(request(sid, 1)))
        assert await owner_streams(stack, sid) >= 2  # the feed's and the relayed one
        holding.cancel()
        old.cancel()
    finally:
        await direct.close()
        await fanout.close()


async def test_streams_go_on_across_an_owner_hand_off(stack: Stack) -> None:
    sid = "fan-handoff"
    direct = SessionClient(stack.session_addr)
    fanout = SessionClient(stack.fanout_addr)
    try:
        await direct.append(sid, "hello")
        stream = fanout.subscribe(sid)
        await until_caught_up(stream)
        epoch = (await direct.get(sid)).epoch
        async with grpc.aio.insecure_channel(stack.session_addr) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            hand_off = cluster_pb2.HandOffRequest(session_id=sid)
            await stub.HandOff(hand_off, metadata=stack.cluster_metadata, timeout=10)
        sent = await direct.prompt(sid, "tokens=4", client_id="after-hand-off")
        assert sent.epoch > epoch
        assert await answer_of(stream, sent.answer_seq) == "tok0 tok1 tok2 tok3"
        stream.cancel()
    finally:
        await direct.close()
        await fanout.close()


async def test_a_subscriber_that_stops_reading_is_cut_and_the_others_are_not(
    stack: Stack,
) -> None:
    sid = "fan-slow"
    direct = SessionClient(stack.session_addr)
    fanout = SessionClient(stack.fanout_addr)
    try:
        await direct.append(sid, "hello")
        reader = fanout.subscribe(sid)
        # A client that reads nothing: no BDP probing, so its window stays at 64 KiB.
        small = grpc.aio.insecure_channel(
            stack.fanout_addr,
            options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65536)],
        )
        idle = session_pb2_grpc.SessionServiceStub(small).Subscribe(request(sid))
        await until_caught_up(reader)
        await until_caught_up(idle)
        big = "x" * 120_000  # 40 of them overflow any flow-control window between us
        for n in range(40):
            await direct.patch(sid, f'{{"k":"{n}{big}"}}')
        seen = await events_until(reader, "state_changed", 40)
        assert len([e for e in seen if e.WhichOneof("kind") == "state_changed"]) == 40
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            async for _ in idle:
                pass
        assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "resubscribe from your cursor" in (cut.value.details() or "")
        reader.cancel()
        await small.close()
    finally:
        await direct.close()
        await fanout.close()


async def test_other_methods_are_not_served_by_the_fanout(stack: Stack) -> None:
    fanout = SessionClient(stack.fanout_addr)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await fanout.get("fan-other")
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await fanout.close()


async def test_a_bad_session_id_gets_the_owners_status(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(GrpcWebError) as bad:
            await until_caught_up(web_events(http, stack.envoy_url, request("bad id!")))
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT
    direct = SessionClient(stack.session_addr)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as owner:
            await until_caught_up(direct.subscribe("bad id!"))
        assert owner.value.details() == bad.value.message
    finally:
        await direct.close()
