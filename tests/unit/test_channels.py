"""The channel cache (common/channels.py): one long-lived channel per address, closed together."""

from __future__ import annotations

import grpc

from common.channels import Channels
from durablechat.v1 import session_pb2_grpc

SHUTDOWN = grpc.ChannelConnectivity.SHUTDOWN


async def test_one_channel_per_address_reused_for_every_call() -> None:
    channels = Channels()
    try:
        first = channels.get("127.0.0.1:1")
        assert channels.get("127.0.0.1:1") is first
        assert channels.get("127.0.0.1:2") is not first
    finally:
        await channels.close()


async def test_a_stub_is_built_once_per_address_and_kind() -> None:
    channels = Channels(options=(), traced=False)
    try:
        stub = channels.stub("127.0.0.1:1", session_pb2_grpc.SessionServiceStub)
        assert channels.stub("127.0.0.1:1", session_pb2_grpc.SessionServiceStub) is stub
        assert channels.stub("127.0.0.1:2", session_pb2_grpc.SessionServiceStub) is not stub
    finally:
        await channels.close()


async def test_close_shuts_every_channel_and_a_later_call_opens_a_new_one() -> None:
    channels = Channels()
    opened = [channels.get("127.0.0.1:1"), channels.get("127.0.0.1:2")]

    await channels.close()

    assert [c.get_state() for c in opened] == [SHUTDOWN, SHUTDOWN]
    reopened = channels.get("127.0.0.1:1")
    assert reopened not in opened and reopened.get_state() != SHUTDOWN
    await channels.close()
