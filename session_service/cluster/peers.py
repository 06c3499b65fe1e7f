"""Long-lived gRPC channels to the other session-service pods, one per address."""

from __future__ import annotations

import grpc

from common import tracing
from common.grpc_server import CHANNEL_OPTIONS
from durablechat.v1 import session_pb2_grpc


class Peers:
    """Channels are created on first use and closed at shutdown."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, session_pb2_grpc.SessionServiceStub] = {}

    def stub(self, address: str) -> session_pb2_grpc.SessionServiceStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(
                address, options=CHANNEL_OPTIONS, interceptors=tracing.client_interceptors()
            )
            self._channels[address] = channel
            stub = self._stubs[address] = session_pb2_grpc.SessionServiceStub(channel)
        return stub

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()
