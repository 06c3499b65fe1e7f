"""The one cache of long-lived gRPC client channels, one per address.

A `Channels` creates a `grpc.aio` channel to an address on first use, with the options (keepalive,
message sizes, load balancing...) it was built with and, when `traced`, the tracing client
interceptors (common/tracing.py); every later call for that address reuses it, and so does a stub
asked of it (`stub(address, SomeServiceStub)`, built once per address and kind). Channels are
never closed one by one: a channel to a pod that left may still carry streams whose readers
expect them to end by themselves. `close()` closes them all at shutdown; asked again afterwards,
the cache opens new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import grpc

from common import tracing
from common.grpc_server import CHANNEL_OPTIONS

Stub = TypeVar("Stub")


class Channels:
    """Owns every channel it opened (no one else closes them); not thread-safe: use it from
    one event loop."""

    def __init__(
        self, options: Sequence[tuple[str, Any]] = CHANNEL_OPTIONS, traced: bool = True
    ) -> None:
        self._options = list(options)
        self._traced = traced
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[str, Callable[[grpc.aio.Channel], Any]], Any] = {}

    def get(self, address: str) -> grpc.aio.Channel:
        """The channel to `address` (host:port or any gRPC target), opened on first use."""
        channel = self._channels.get(address)
        if channel is None:
            interceptors = tracing.client_interceptors() if self._traced else None
            channel = grpc.aio.insecure_channel(
                address, options=self._options, interceptors=interceptors
            )
            self._channels[address] = channel
        return channel

    def stub(self, address: str, kind: Callable[[grpc.aio.Channel], Stub]) -> Stub:
        """A `kind` stub (e.g. `SessionServiceStub`) over the channel to `address`, built once."""
        key = (address, kind)
        stub = self._stubs.get(key)
        if stub is None:
            stub = self._stubs[key] = kind(self.get(address))
        return cast(Stub, stub)

    async def close(self) -> None:
        """Closes every channel (their calls end CANCELLED) and forgets them."""
        channels = list(self._channels.values())
        self._channels.clear()
        self._stubs.clear()
        for channel in channels:
            await channel.close()
