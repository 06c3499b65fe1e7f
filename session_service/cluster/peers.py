"""Long-lived gRPC channels to the other session-service pods, one per address (common/channels)."""

from __future__ import annotations

from common.channels import Channels
from durablechat.v1 import session_pb2_grpc


class Peers:
    """Channels are created on first use and closed at shutdown."""

    def __init__(self) -> None:
        self._channels = Channels()

    def stub(self, address: str) -> session_pb2_grpc.SessionServiceStub:
        return self._channels.stub(address, session_pb2_grpc.SessionServiceStub)

    async def ready(self, address: str) -> None:
        """Returns once the channel to `address` is connected (it tries to connect meanwhile)."""
        await self._channels.get(address).channel_ready()

    async def close(self) -> None:
        await self._channels.close()
